"""The arguments of a TER training run, as a dataclass that `transformers.HfArgumentParser` turns into a command line
(`scripts/train.py`) and that Python callers build directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..models.configuration_ter import MODALITIES

AUGMENTATIONS = ("noise", "modality_dropout")
LAYER_SUM_MODALITIES = ("audio", "text")


@dataclass
class TERTrainingArguments:
    """What a training run does; every value is checked in `__post_init__` (a `ValueError` names the argument)."""

    output_dir: str = field(metadata={"help": "where the checkpoint (and checkpoints/epoch_N) go"})
    manifest: Optional[str] = field(
        default=None,
        metadata={"help": "training corpus, manifest CSV format (scripts/train.py: the embedded demo corpus)"},
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "replace a run already in --output_dir"})
    modalities: Optional[str] = field(
        default=None,
        metadata={"help": "comma-separated subset of audio,text,video (default: every modality the corpus has)"},
    )
    fusion: Literal["dempster_shafer", "evidence_average", "confidence_weighted"] = "dempster_shafer"
    epochs: int = field(
        default=200,
        metadata={
            "help": "at most this many: frozen encoders train the final heads for the epoch count of lowest "
            "cross-fitted held-out NLL; --finetune keeps the epoch of best validation accuracy"
        },
    )
    early_stopping_patience: int = field(
        default=20,
        metadata={
            "help": "frozen encoders: the cross-fitting stops once the pooled held-out NLL has not improved for this "
            "many epochs (E* is the epoch of its minimum)"
        },
    )
    calibration_folds: int = field(
        default=5,
        metadata={
            "help": "speaker folds of the cross-fitting (frozen encoders): every training speaker is scored by heads "
            "that never saw it, to choose the epochs and fit the domain gate, the confidence calibration and the "
            "threshold; at most the number of speakers"
        },
    )
    domain_gate: str = field(
        default="audio",
        metadata={
            "help": "comma-separated modalities whose evidence fades outside the training domain (a Mahalanobis gate "
            "on their pooled features, fitted by cross-fitting), or 'none'"
        },
    )
    batch_size: int = field(default=16, metadata={"help": "per process"})
    gradient_accumulation_steps: int = 1
    learning_rate: float = field(
        default=1e-3,
        metadata={"help": "Adam (TMC uses 3e-4; 1e-3 measured better on EmoDB, see scripts/bench_quality.py)"},
    )
    weight_decay: float = field(default=1e-5, metadata={"help": "Adam, as TMC"})
    annealing_epochs: float = field(
        default=10,
        metadata={"help": "the KL weight of the Trusted CE loss rises to 1 over this many epochs of optimizer steps"},
    )
    head_dropout: float = 0.1
    class_weighting: Literal["balanced", "none"] = field(
        default="balanced",
        metadata={
            "help": "'balanced': each sample's Trusted CE loss weighed by N / (K n_k) of its class in the training "
            "split (imbalanced corpora such as MELD); 'none': every sample 1"
        },
    )
    validation_fraction: float = field(
        default=0.2,
        metadata={
            "help": "with --finetune full|lora: share of each corpus held out as whole speakers for validation and "
            "the threshold (frozen encoders cross-fit over --calibration_folds instead)"
        },
    )
    seed: int = field(default=42, metadata={"help": "controls the split, the initialisation and the order"})
    threshold_strategy: Literal["max_f1", "break_even", "target_precision"] = field(
        default="break_even",
        metadata={"help": "how the trusted threshold stored in the checkpoint is chosen on validation data"},
    )
    target_precision: float = field(default=0.95, metadata={"help": "for --threshold_strategy target_precision"})
    finetune: Literal["none", "full", "lora"] = field(
        default="none",
        metadata={"help": "none: frozen encoders, cached features; full / lora: train the backbones on raw inputs"},
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "with --finetune full|lora: recompute backbone activations in the backward pass (less memory)"
        },
    )
    weighted_layer_sum: str = field(
        default="audio",
        metadata={
            "help": "comma-separated modalities (of audio,text) that learn a weighted sum of all encoder layers "
            "instead of using the last one, or 'none'"
        },
    )
    resume_from_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "a checkpoints/epoch_N folder, or 'latest'"}
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "feature cache (default: $TER_CACHE/features)"})
    encode_batch_size: int = field(
        default=16, metadata={"help": "items encoded together (sorted by length) when filling the feature cache"}
    )
    augment: Optional[str] = field(
        default=None,
        metadata={
            "help": "comma-separated: noise (one extra copy of every training item with its audio at a random SNR of "
            "20/10/5/0 dB, white or pink noise or babble of 4 other training utterances), modality_dropout (see "
            "--modality_dropout), or none (default: noise with --finetune none, else none)"
        },
    )
    modality_dropout: float = field(
        default=0.3,
        metadata={
            "help": "with --augment modality_dropout: each present modality of a training item is dropped with this "
            "probability, never the last one"
        },
    )

    def __post_init__(self):
        if self.manifest is None:
            raise ValueError("--manifest: give the training corpus as a manifest CSV (see modeling_ter.data.manifest).")
        unknown = sorted(set(self.augmentations) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"--augment {unknown}: choose from {list(AUGMENTATIONS)}.")
        if not 0.0 <= self.modality_dropout <= 1.0:
            raise ValueError(f"--modality_dropout must lie in [0, 1], got {self.modality_dropout}.")
        if "noise" in self.augmentations and self.finetune != "none":
            raise ValueError(
                "--augment noise adds encoded noisy copies to the cached training features: use --finetune none."
            )
        if self.gradient_checkpointing and self.finetune == "none":
            raise ValueError("--gradient_checkpointing needs --finetune full or lora: frozen encoders run no backward.")
        if not set(self.layer_sum_modalities) <= set(LAYER_SUM_MODALITIES):
            raise ValueError(
                f"--weighted_layer_sum {self.weighted_layer_sum!r}: choose modalities among audio,text, or 'none'."
            )
        unknown_gates = sorted(set(self.gated_modalities) - set(MODALITIES))
        if unknown_gates:
            raise ValueError(f"--domain_gate {unknown_gates}: choose modalities among {list(MODALITIES)}, or 'none'.")
        if self.calibration_folds < 2:
            raise ValueError(f"--calibration_folds must be at least 2, got {self.calibration_folds}.")
        for name in (
            "epochs",
            "early_stopping_patience",
            "batch_size",
            "gradient_accumulation_steps",
            "encode_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}.")
        if self.annealing_epochs <= 0:
            raise ValueError(f"--annealing_epochs must be positive, got {self.annealing_epochs}.")

    @property
    def augmentations(self) -> tuple[str, ...]:
        """`--augment` as a tuple of names (by default `("noise",)` on cached features, `()` when fine-tuning)."""
        if self.augment is None:
            return ("noise",) if self.finetune == "none" else ()
        return tuple(a.strip() for a in self.augment.split(",") if a.strip() and a.strip() != "none")

    @property
    def layer_sum_modalities(self) -> tuple[str, ...]:
        """`--weighted_layer_sum` as a tuple of modalities (empty for 'none')."""
        names = self.weighted_layer_sum.strip()
        return () if names == "none" else tuple(m.strip() for m in names.split(",") if m.strip())

    @property
    def gated_modalities(self) -> tuple[str, ...]:
        """`--domain_gate` as a tuple of modalities (empty for 'none')."""
        names = self.domain_gate.strip()
        return () if names == "none" else tuple(m.strip() for m in names.split(",") if m.strip())

    @property
    def cross_fits(self) -> bool:
        """Frozen encoders: calibration by cross-fitting over speaker folds (else on a validation split)."""
        return self.finetune == "none"

    def requested_modalities(self) -> Optional[list[str]]:
        """`--modalities` as a list, `None` when not given; `ValueError` for unknown names."""
        if self.modalities is None:
            return None
        requested = [m.strip() for m in self.modalities.split(",") if m.strip()]
        unknown = [m for m in requested if m not in MODALITIES]
        if unknown or not requested:
            raise ValueError(
                f"--modalities {self.modalities!r}: unknown name(s) {unknown}; choose from {list(MODALITIES)}."
            )
        return requested
