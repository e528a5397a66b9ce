"""TER model configuration.

This file is copied next to the weights by `save_pretrained` (remote code), so it imports nothing from the rest
of the `modeling_ter` package.
"""

import copy
import math
import os
from typing import Any, Optional, Union

from transformers import AutoConfig, PreTrainedConfig

from .evidential import CONFIDENCE_MEASURES

MODALITIES = ("audio", "text", "video")
FUSION_RULES = ("dempster_shafer", "evidence_average", "confidence_weighted")
POOLING_MODES = ("mean", "cls")
FACE_CNN_MODEL_TYPE = "ter_face_cnn"
# The task of the pipeline that `save_pretrained` saves with the model (modeling_ter/pipelines).
PIPELINE_TASK = "trusted-emotion-recognition"

# The shared label vocabulary of the corpora loaders (modeling_ter/corpora.py), in id order.
EMOTION_LABELS = ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

_MODALITY_CONFIG_KEYS = (
    "backbone",
    "embed_dim",
    "use_weighted_layer_sum",
    "num_feature_layers",
    "pooling",
    "domain_reference",
    "domain_width",
)


def backbone_dimensions(backbone: Union[dict, PreTrainedConfig]) -> tuple[int, int]:
    """Returns `(hidden_size, num_hidden_layers)` of a backbone config (a transformers config or dict, or a
    `ter_face_cnn` dict)."""
    if isinstance(backbone, PreTrainedConfig):
        return backbone.hidden_size, backbone.num_hidden_layers
    if backbone["model_type"] == FACE_CNN_MODEL_TYPE:
        return backbone["hidden_size"], 1
    backbone_config = AutoConfig.for_model(**backbone)
    return backbone_config.hidden_size, backbone_config.num_hidden_layers


def portable_name(name_or_path: Optional[str]) -> Optional[str]:
    """A backbone's `_name_or_path` as it may be saved and pushed: a Hub ID or name, never a local folder.

    A path that is absolute, starts with `.` or `~`, or names an existing folder is reduced to its last component
    (`/root/.cache/ter/whisper-tiny.en` -> `whisper-tiny.en`); Hub IDs (`org/name`) and names are kept.
    """
    if not name_or_path:
        return name_or_path
    name = os.fspath(name_or_path)
    if os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or os.path.isdir(name):
        return os.path.basename(os.path.normpath(name))
    return name


def normalize_modality_config(modality: str, modality_config: Union[dict, PreTrainedConfig, None]) -> Optional[dict]:
    """Validates one modality's sub-config and fills in what follows from its backbone.

    A `PreTrainedConfig` is taken as the backbone of that modality. Raises `ValueError` naming the modality.
    """
    if modality_config is None:
        return None
    if isinstance(modality_config, PreTrainedConfig):
        modality_config = {"backbone": modality_config.to_dict()}
    modality_config = copy.deepcopy(dict(modality_config))
    unknown = sorted(set(modality_config) - set(_MODALITY_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"modality_configs[{modality!r}] has unknown keys {unknown}; the allowed keys are {list(_MODALITY_CONFIG_KEYS)}."
        )
    backbone = modality_config.get("backbone")
    if isinstance(backbone, PreTrainedConfig):
        backbone = backbone.to_dict()
    if backbone is not None and backbone.get("_name_or_path"):
        backbone = {**backbone, "_name_or_path": portable_name(backbone["_name_or_path"])}
    if backbone is not None and "model_type" not in backbone:
        raise ValueError(
            f"modality_configs[{modality!r}]['backbone'] needs a 'model_type' (e.g. 'whisper', 'bert', 'vit')."
        )
    pooling = modality_config.get("pooling", "mean")
    if pooling not in POOLING_MODES:
        raise ValueError(f"modality_configs[{modality!r}]['pooling'] must be one of {POOLING_MODES}, got {pooling!r}.")
    use_weighted_layer_sum = bool(modality_config.get("use_weighted_layer_sum", False))
    embed_dim = modality_config.get("embed_dim")
    num_feature_layers = modality_config.get("num_feature_layers", 1)
    if backbone is not None and embed_dim is None:
        # A new sub-config: the widths follow from the backbone. A saved one carries them, and the encoder checks
        # them against the backbone it builds (so the backbone config is resolved once, not at every config load).
        hidden_size, num_hidden_layers = backbone_dimensions(backbone)
        embed_dim = hidden_size
        num_feature_layers = num_hidden_layers + 1 if use_weighted_layer_sum else 1
    elif embed_dim is None:
        raise ValueError(
            f"modality_configs[{modality!r}] has no backbone, so it needs 'embed_dim' (the width of the precomputed "
            f"`{modality}_embeds` it will receive)."
        )
    if use_weighted_layer_sum and num_feature_layers < 2:
        raise ValueError(
            f"modality_configs[{modality!r}]['use_weighted_layer_sum'] needs num_feature_layers >= 2, got {num_feature_layers}."
        )
    domain_reference, domain_width = modality_config.get("domain_reference"), modality_config.get("domain_width")
    if (domain_reference is None) != (domain_width is None) or (domain_width is not None and not domain_width > 0):
        raise ValueError(
            f"modality_configs[{modality!r}] needs both 'domain_reference' and a positive 'domain_width' (a fitted "
            f"domain gate) or neither; got {domain_reference} and {domain_width}."
        )
    return {
        "backbone": backbone,
        "embed_dim": int(embed_dim),
        "use_weighted_layer_sum": use_weighted_layer_sum,
        "num_feature_layers": int(num_feature_layers),
        "pooling": pooling,
        "domain_reference": None if domain_reference is None else float(domain_reference),
        "domain_width": None if domain_width is None else float(domain_width),
    }


class TERConfig(PreTrainedConfig):
    r"""
    Configuration of a TER model: one evidential opinion per modality, fused by confidence.

    `modality_configs` maps each modality (`audio`, `text`, `video`; any non-empty subset) to a sub-config dict
    with the keys:

    - `backbone` (`dict` or `None`): a transformers config dict with a `model_type` (any `AutoModel`
      architecture: `whisper`, `wav2vec2`, `bert`, `vit`, ...), or `{"model_type": "ter_face_cnn", ...}` for the
      FER2013 mini-Xception face encoder of this library. `None` means the modality only receives precomputed
      pooled features (`<modality>_embeds`).
    - `embed_dim` (`int`): width of the pooled features. Derived from the backbone; required without one.
    - `use_weighted_layer_sum` (`bool`, *optional*, defaults to `False`): pool every hidden layer of the backbone
      and learn a softmax-weighted sum of them (as SUPERB does) instead of using the last layer only.
    - `num_feature_layers` (`int`): how many pooled layers the features stack (derived from the backbone).
    - `pooling` (`str`, *optional*, defaults to `"mean"`): `"mean"` (mean over the real, unmasked frames or
      tokens) or `"cls"` (first token).
    - `domain_reference`, `domain_width` (`float`, *optional*): the domain gate of the modality, set by training
      (design notes §7): its evidence is multiplied by `exp(-(max(0, d - reference) / width) ** 2)`, `d` the
      Mahalanobis distance of its pooled features to the nearest class of the training data (`domain.py`; the class
      means and shared precision are buffers in the weights). Far from the training data the opinion becomes vacuous
      and drops out of the fusion. `None`: no gate.

    Args:
        modality_configs (`dict[str, dict]`): The sub-config of each modality, e.g. `{"audio": {...}, "text": {...}}`.
            (Checkpoints saved before version 0.2 stored them as `audio_config` / `text_config` / `video_config`;
            those keys are still read.)
        fusion (`str`, *optional*, defaults to `"dempster_shafer"`): How opinions are combined:
            `"dempster_shafer"` (reduced Dempster-Shafer rule of TMC), `"evidence_average"` (mean evidence of the
            present modalities) or `"confidence_weighted"` (expected probabilities averaged with the modality
            confidences as weights).
        confidence_measure (`str`, *optional*, defaults to `"belief"`): The raw confidence of the fused opinion:
            `"belief"` the belief mass of the predicted class `e_max / S` (0 for the vacuous opinion),
            `"uncertainty"` `1 - u`, `"max_probability"` `max_k p_k`. The uncertainty `u = K / S` is reported as is.
        evidence_calibration (`dict[str, float]`, *optional*): Per modality, the log of a factor its evidence is
            multiplied by (a temperature on that modality's opinion, fitted by training on held-out speakers: each
            modality's heads are over- or under-confident in their own way). Missing modalities keep their evidence.
        confidence_calibration (`list[float]`, *optional*): `[slope, intercept]` of the calibration map: the
            reported confidence is `sigmoid(slope * logit(raw confidence) + intercept)`, fitted by training on
            held-out speakers so that it estimates P(correct). `None` reports the raw confidence.
        head_hidden_size (`int`, *optional*, defaults to 256): Hidden width of each evidential head.
        head_dropout (`float`, *optional*, defaults to 0.1): Dropout inside each evidential head.
        annealing_steps (`int`, *optional*, defaults to 1000): Optimizer steps over which the KL weight of the
            Trusted CE loss rises linearly from 0 to 1.
        class_weights (`list[float]`, *optional*): A weight per class (`num_labels` values) on each sample's Trusted CE
            loss, e.g. `N / (K n_k)` ("balanced") for imbalanced corpora; training only. `None` weighs every sample 1.
        trusted_threshold (`float`, *optional*): Confidence at or above which a prediction is trusted; set by
            calibration on validation data. Without it the output's `trusted` field is `None`.
        trusted_threshold_strategy (`str`, *optional*): How `trusted_threshold` was chosen (e.g. `"break_even"`).
        initializer_range (`float`, *optional*, defaults to 0.02): Standard deviation of the heads' initial weights.

    Examples:

    ```python
    >>> from modeling_ter import TERConfig, TERForEmotionRecognition

    >>> config = TERConfig(modality_configs={"audio": {"embed_dim": 16}, "text": {"embed_dim": 8}}, num_labels=4)
    >>> config.modalities
    ('audio', 'text')
    >>> model = TERForEmotionRecognition(config)
    ```
    """

    model_type = "ter"

    def __init__(
        self,
        modality_configs: Optional[dict[str, Optional[dict]]] = None,
        fusion: str = "dempster_shafer",
        confidence_measure: str = "belief",
        evidence_calibration: Optional[dict[str, float]] = None,
        confidence_calibration: Optional[list[float]] = None,
        head_hidden_size: int = 256,
        head_dropout: float = 0.1,
        annealing_steps: int = 1000,
        class_weights: Optional[list[float]] = None,
        trusted_threshold: Optional[float] = None,
        trusted_threshold_strategy: Optional[str] = None,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ):
        modality_configs = dict(modality_configs or {})
        for modality in MODALITIES:  # the layout of checkpoints saved before version 0.2
            legacy = kwargs.pop(f"{modality}_config", None)
            if legacy is not None:
                modality_configs.setdefault(modality, legacy)
        unknown = sorted(set(modality_configs) - set(MODALITIES))
        if unknown:
            raise ValueError(
                f"Unknown modality (modalities) {unknown} in modality_configs; TER has {list(MODALITIES)}."
            )
        if fusion not in FUSION_RULES:
            raise ValueError(f"fusion must be one of {FUSION_RULES}, got {fusion!r}.")
        if confidence_measure not in CONFIDENCE_MEASURES:
            raise ValueError(f"confidence_measure must be one of {CONFIDENCE_MEASURES}, got {confidence_measure!r}.")
        if confidence_calibration is not None and (
            len(confidence_calibration) != 2 or not confidence_calibration[0] > 0
        ):
            raise ValueError(
                f"confidence_calibration must be [slope, intercept] with slope > 0, got {confidence_calibration!r}."
            )
        if annealing_steps < 1:
            raise ValueError(f"annealing_steps must be a positive number of optimizer steps, got {annealing_steps}.")
        if trusted_threshold is not None and not 0.0 <= trusted_threshold <= 1.0:
            raise ValueError(f"trusted_threshold must lie in [0, 1], got {trusted_threshold}.")
        normalized = {m: normalize_modality_config(m, modality_configs.get(m)) for m in MODALITIES}
        self.modality_configs = {m: value for m, value in normalized.items() if value is not None}
        self.fusion = fusion
        self.confidence_measure = confidence_measure
        self.evidence_calibration = {m: float(v) for m, v in (evidence_calibration or {}).items()} or None
        self.confidence_calibration = (
            None if confidence_calibration is None else [float(v) for v in confidence_calibration]
        )
        self.head_hidden_size = head_hidden_size
        self.head_dropout = head_dropout
        self.annealing_steps = annealing_steps
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.trusted_threshold = trusted_threshold
        self.trusted_threshold_strategy = trusted_threshold_strategy
        self.initializer_range = initializer_range
        if "id2label" not in kwargs and "label2id" not in kwargs and "num_labels" not in kwargs:
            kwargs["id2label"] = dict(enumerate(EMOTION_LABELS))
        if kwargs.get("id2label") is not None and kwargs.get("label2id") is None:
            # transformers leaves label2id None when only id2label is given; evaluation maps names through it.
            kwargs["label2id"] = {label: int(i) for i, label in kwargs["id2label"].items()}
        super().__init__(**kwargs)
        if self.class_weights is not None and (
            len(self.class_weights) != self.num_labels or not all(w >= 0 for w in self.class_weights)
        ):
            raise ValueError(
                f"class_weights must hold {self.num_labels} non-negative weights (one per label), got "
                f"{self.class_weights}."
            )
        if not self.modalities:
            raise ValueError(
                f"A TER model needs at least one modality: give modality_configs a sub-config for one of {MODALITIES}."
            )

    @property
    def modalities(self) -> tuple[str, ...]:
        """The configured modalities, in the fixed order audio, text, video."""
        return tuple(m for m in MODALITIES if m in self.modality_configs)

    @property
    def custom_pipelines(self) -> dict:
        """The `custom_pipelines` entry of config.json (the pipeline's remote code, written by `save_pretrained`).

        Where this config class is the one registered with `AutoConfig` (the `modeling_ter` package is imported) and
        the task is registered with `transformers.pipeline`, the saved entry is hidden: `pipeline(task, model=...)`
        then uses the package's pipeline without `trust_remote_code` (transformers demands it for any task listed
        here). It stays in `to_dict()`, so a saved checkpoint keeps it for projects without the package.
        """
        saved = self.__dict__.get("custom_pipelines") or {}
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
        from transformers.pipelines import PIPELINE_REGISTRY

        if self.model_type not in CONFIG_MAPPING or CONFIG_MAPPING[self.model_type] is not type(self):
            return saved
        return {task: info for task, info in saved.items() if task not in PIPELINE_REGISTRY.supported_tasks}

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict) -> None:
        self.__dict__["custom_pipelines"] = value

    def evidence_factor(self, modality: str) -> float:
        """The factor `exp(evidence_calibration[modality])` on the modality's evidence (1 when not calibrated)."""
        return math.exp((self.evidence_calibration or {}).get(modality, 0.0))

    def modality_config(self, modality: str) -> dict:
        """The sub-config of `modality`; `ValueError` when the model has no such modality."""
        if modality not in self.modalities:
            raise ValueError(f"Unknown modality {modality!r}: this model has {list(self.modalities)}.")
        return self.modality_configs[modality]


__all__ = ["TERConfig"]
