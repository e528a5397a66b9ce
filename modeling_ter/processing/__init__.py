"""Raw inputs -> model inputs: the TER processor and the audio / face-video readers."""

from .processing_ter import TERProcessor

__all__ = ["TERProcessor"]
