"""TER: trusted multimodal emotion recognition for transformers.

Importing the package registers the model, the processor and the "trusted-emotion-recognition" pipeline with
transformers, and the model for `save_pretrained` remote code.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_ter import EMOTION_LABELS, MODALITIES, TERConfig
from .modeling_ter import TERForEmotionRecognition, TEROutput, TERPreTrainedModel, TrustedCELoss
from .pipeline_ter import TrustedEmotionRecognitionPipeline  # registers "trusted-emotion-recognition"
from .processing_ter import TERProcessor  # registers AutoProcessor for TERConfig

AutoConfig.register(TERConfig.model_type, TERConfig)
AutoModel.register(TERConfig, TERForEmotionRecognition)
AutoModelForSequenceClassification.register(TERConfig, TERForEmotionRecognition)
TERConfig.register_for_auto_class()
TERForEmotionRecognition.register_for_auto_class("AutoModel")

__all__ = [
    "EMOTION_LABELS",
    "MODALITIES",
    "TERConfig",
    "TERForEmotionRecognition",
    "TEROutput",
    "TERPreTrainedModel",
    "TERProcessor",
    "TrustedEmotionRecognitionPipeline",
    "TrustedCELoss",
]
