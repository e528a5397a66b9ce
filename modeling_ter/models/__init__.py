"""The TER model: config, model and building blocks (the files `save_pretrained` copies as remote code)."""

from .configuration_ter import EMOTION_LABELS, MODALITIES, TERConfig
from .modeling_ter import TERForEmotionRecognition, TEROutput, TERPreTrainedModel

__all__ = ["EMOTION_LABELS", "MODALITIES", "TERConfig", "TERForEmotionRecognition", "TEROutput", "TERPreTrainedModel"]
