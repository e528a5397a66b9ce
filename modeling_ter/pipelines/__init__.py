"""The "trusted-emotion-recognition" pipeline (registered with `transformers.pipeline` on import)."""

from .trusted_emotion_recognition import TrustedEmotionRecognitionPipeline

__all__ = ["TrustedEmotionRecognitionPipeline"]
