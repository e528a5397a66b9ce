"""TER: trusted multimodal emotion recognition for transformers.

Importing the package registers the model, the processor and the "trusted-emotion-recognition" pipeline with
transformers, and all three for `save_pretrained` remote code: a saved checkpoint then loads with `AutoModel`,
`AutoProcessor` and `pipeline(..., trust_remote_code=True)` in a project without this package. The package is laid out by concern:

- `models/`: the config, the model and its building blocks (what `save_pretrained` copies as remote code);
- `processing/`: the processor and the audio / video readers;
- `pipelines/`: the "trusted-emotion-recognition" pipeline;
- `encoders/`: the default pretrained encoders, their converters and shipped weights;
- `data/`: manifests, speaker-disjoint splits, corpus layouts, the feature cache, augmentation;
- `training/`: the Accelerate training loop, its datasets, checkpoints and calibration;
- `evaluation/`: batched prediction, the evaluation report, plots and baselines;
- `hub/`: model cards and pushes to the Hub;
- `utils/`: atomic writes and the cache folder.

Only `models/`, `processing/` and `pipelines/` load with the package; the rest (and their heavier dependencies:
PyAV, OpenCV, scikit-learn, matplotlib, openSMILE) load when imported.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoProcessor

from .models import EMOTION_LABELS, MODALITIES, TERConfig, TERForEmotionRecognition, TEROutput, TERPreTrainedModel
from .models.evidential import TrustedCELoss
from .pipelines import TrustedEmotionRecognitionPipeline  # registers "trusted-emotion-recognition"
from .processing import TERProcessor

AutoConfig.register(TERConfig.model_type, TERConfig)
AutoModel.register(TERConfig, TERForEmotionRecognition)
AutoModelForSequenceClassification.register(TERConfig, TERForEmotionRecognition)
AutoProcessor.register(TERConfig, TERProcessor, exist_ok=True)
TERConfig.register_for_auto_class()
TERForEmotionRecognition.register_for_auto_class("AutoModel")
TERProcessor.register_for_auto_class("AutoProcessor")

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
