"""TER: trusted multimodal emotion recognition as a transformers model.

Each modality gives a Dirichlet opinion (evidence, belief, uncertainty); the opinions are fused by the reduced
Dempster-Shafer rule of TMC (Han et al., ICLR 2021) or one of two alternatives; training uses the Trusted CE loss
(EDL's adjusted cross-entropy plus an annealed KL term, Sensoy et al. 2018). The formulas are those of the project's
design notes, a reconstruction of Xue et al. (arXiv 2508.07625), which publishes none.

This file is copied next to the weights by `save_pretrained` (remote code), with the sibling files it imports
relatively (`configuration_ter.py`, `domain.py`, `evidential.py`, `face_cnn.py`, `whisper_unpadded.py`): together they import only
torch, safetensors and transformers.
"""

import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput, cached_file

from .configuration_ter import (
    FACE_CNN_MODEL_TYPE,
    MODALITIES,
    PIPELINE_TASK,
    TERConfig,
    backbone_dimensions,
    portable_name,
)
from .domain import MahalanobisDomain
from .evidential import (
    TrustedCELoss,
    calibrated_confidence,
    dempster_shafer_pool,
    fuse_opinions,
    opinion_from_evidence,
    pairwise_conflict,
)
from .face_cnn import MiniXceptionFaceEncoder
from .whisper_unpadded import whisper_encoder_unpadded

# What `TERForEmotionRecognition.quantize_encoders` can do to the encoders' linear layers for inference.
ENCODER_QUANTIZATIONS = ("none", "dynamic_int8")

# ----------------------------------------------------------------------------------------------------------------
# Building blocks: pooling, layer weighting, evidential heads, encoders
# ----------------------------------------------------------------------------------------------------------------


def masked_mean(hidden_states: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean over the real positions: `hidden_states` `(batch, length, dim)`, `mask` `(batch, length)` -> `(batch, dim)`."""
    if mask is None:
        return hidden_states.mean(1)
    weights = mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class TERLayerWeighting(nn.Module):
    """Softmax-weighted sum of pooled layers (as SUPERB): `(batch, num_layers, dim)` -> `(batch, dim)`."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layer_features: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.layer_logits, dim=0)
        return torch.einsum("l,bld->bd", weights, layer_features)


class TEREvidentialHead(nn.Module):
    """Pooled features `(batch, embed_dim)` -> non-negative class evidence `(batch, num_labels)` (softplus)."""

    def __init__(self, embed_dim: int, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.dense = nn.Linear(embed_dim, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(F.gelu(self.dense(self.layer_norm(features))))
        return F.softplus(self.out_proj(hidden))


def load_pretrained_backbone(source: str, name: Optional[str] = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Config dict and state dict of a pretrained backbone (local folder or Hub ID) through `from_pretrained`.

    Encoder-decoder checkpoints (Whisper) give their encoder's weights; `ter_face_cnn` folders load our face CNN.
    The config's `_name_or_path` is `name`, or the source reduced to a portable name (a Hub ID stays, a local folder
    becomes its last component), so that no local path is saved with a TER checkpoint.
    """
    with open(cached_file(source, "config.json"), encoding="utf-8") as config_file:
        config_dict = json.load(config_file)
    if config_dict.get("model_type") == FACE_CNN_MODEL_TYPE:
        state_dict = load_safetensors(cached_file(source, "model.safetensors"))
    else:
        backbone = AutoModel.from_pretrained(source)
        if backbone.config.is_encoder_decoder:
            backbone = backbone.get_encoder()
            config_dict = AutoConfig.from_pretrained(source).to_dict()
        else:
            config_dict = backbone.config.to_dict()
        state_dict = backbone.state_dict()
    config_dict["_name_or_path"] = portable_name(name or os.fspath(source))
    return config_dict, state_dict


class TERModalityEncoder(nn.Module):
    """One modality's backbone plus pooling: raw inputs -> pooled features of every used layer `(batch, L, dim)`.

    `L` is 1 (last layer) or, with `use_weighted_layer_sum`, the backbone's layers plus its embedding output.
    """

    def __init__(self, modality_config: dict):
        super().__init__()
        backbone_config = dict(modality_config["backbone"])
        self.model_type = backbone_config["model_type"]
        self.pooling = modality_config["pooling"]
        self.all_layers = modality_config["use_weighted_layer_sum"]
        if self.model_type == FACE_CNN_MODEL_TYPE:
            self.backbone = MiniXceptionFaceEncoder.from_config_dict(backbone_config)
            hidden_size, num_hidden_layers = backbone_dimensions(backbone_config)
        else:
            config = AutoConfig.for_model(**backbone_config)
            backbone = AutoModel.from_config(config)
            # Encoder-decoder checkpoints (Whisper) contribute their encoder only.
            self.backbone = backbone.get_encoder() if config.is_encoder_decoder else backbone
            hidden_size, num_hidden_layers = backbone_dimensions(config)
        expected = (hidden_size, num_hidden_layers + 1 if self.all_layers else 1)
        given = (modality_config["embed_dim"], modality_config["num_feature_layers"])
        if given != expected:
            raise ValueError(
                f"The sub-config gives (embed_dim, num_feature_layers) = {given}, but its {self.model_type} backbone "
                f"has {expected}; leave embed_dim and num_feature_layers out when a backbone is given."
            )

    def _pool(self, hidden_states: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return hidden_states[:, 0] if self.pooling == "cls" else masked_mean(hidden_states, mask)

    def _sequence_features(self, **inputs: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Optional[torch.Tensor]]:
        """Runs a sequence backbone; returns its hidden states (each `(batch, length, dim)`) and the frame mask."""
        if self.model_type == "whisper":
            last_hidden_state, hidden_states, mask = whisper_encoder_unpadded(
                self.backbone, inputs["input_features"], inputs.get("attention_mask"), self.all_layers
            )
            return (hidden_states if self.all_layers else (last_hidden_state,)), mask
        outputs = self.backbone(**inputs, output_hidden_states=self.all_layers, return_dict=True)
        hidden_states = outputs.hidden_states if self.all_layers else (outputs.last_hidden_state,)
        mask = inputs.get("attention_mask")
        if mask is not None and "input_values" in inputs:
            # Waveform models: the sample mask becomes a frame mask through the feature extractor's strides.
            lengths = self.backbone._get_feat_extract_output_lengths(mask.sum(-1))
            frames = torch.arange(hidden_states[-1].shape[1], device=mask.device)
            mask = frames.unsqueeze(0) < lengths.unsqueeze(1)
        return hidden_states, mask

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        if "pixel_values" not in inputs:
            hidden_states, mask = self._sequence_features(**inputs)
            if not self.all_layers:
                hidden_states = hidden_states[-1:]
            return torch.stack([self._pool(h, mask) for h in hidden_states], dim=1)
        # Video: (batch, frames, channels, height, width) -> per-frame features -> mean over the real frames.
        pixel_values, frame_mask = inputs["pixel_values"], inputs.get("frame_mask")
        batch_size, num_frames = pixel_values.shape[:2]
        frames = pixel_values.flatten(0, 1)
        if self.model_type == FACE_CNN_MODEL_TYPE:
            frame_features = self.backbone(frames)[0].unsqueeze(1)
        else:
            outputs = self.backbone(pixel_values=frames, output_hidden_states=self.all_layers, return_dict=True)
            hidden_states = outputs.hidden_states if self.all_layers else (outputs.last_hidden_state,)
            frame_features = torch.stack([self._pool(h, None) for h in hidden_states], dim=1)
        frame_features = frame_features.unflatten(0, (batch_size, num_frames))
        if frame_mask is None:
            return frame_features.mean(1)
        weights = frame_mask.to(frame_features.dtype)[:, :, None, None]
        return (frame_features * weights).sum(1) / weights.sum(1).clamp_min(1.0)


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TEROutput(ModelOutput):
    """
    Output of [`TERForEmotionRecognition`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Trusted CE loss of the fused opinion plus that of each present modality, averaged over the batch.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Log of the fused expected probability, so `argmax` and `softmax` behave as usual.
        alpha (`torch.FloatTensor` of shape `(batch_size, num_labels)`): Fused Dirichlet parameters.
        probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`): Fused expected probability `alpha / S`.
        uncertainty (`torch.FloatTensor` of shape `(batch_size,)`): Fused uncertainty `u = K / S`.
        confidence (`torch.FloatTensor` of shape `(batch_size,)`): The fused opinion's raw confidence
            (`config.confidence_measure`) through the calibration map (`config.confidence_calibration`): an estimate
            of P(prediction correct) on speakers the model never saw.
        trusted (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
            `confidence >= config.trusted_threshold`; `None` while the model has no calibrated threshold.
        modality_alpha (`torch.FloatTensor` of shape `(batch_size, num_modalities, num_labels)`):
            Each modality's Dirichlet (all ones where the modality is absent), in the order of `config.modalities`.
        modality_uncertainty (`torch.FloatTensor` of shape `(batch_size, num_modalities)`): Each modality's `u`.
        modality_confidence (`torch.FloatTensor` of shape `(batch_size, num_modalities)`): Each modality's
            opinion scored as `confidence` is (same measure, same calibration map), so a modality alone gives the
            fused confidence; 0 where it is absent.
        modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`): Which modalities were present.
        modality_domain_distance (`torch.FloatTensor` of shape `(batch_size, num_modalities)`):
            Mahalanobis distance of each modality's pooled features to the nearest class of its training data (0
            where the modality has no domain gate or is absent).
        modality_domain_scale (`torch.FloatTensor` of shape `(batch_size, num_modalities)`):
            The factor the domain gate applied to each modality's evidence (1 without a gate, 0 where absent); near
            0 the opinion is vacuous because the input lies outside the training domain.
        conflict (`torch.FloatTensor` of shape `(batch_size, num_modalities, num_modalities)`):
            Dempster-Shafer conflict between every pair of present modalities.
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    alpha: Optional[torch.FloatTensor] = None
    probs: Optional[torch.FloatTensor] = None
    uncertainty: Optional[torch.FloatTensor] = None
    confidence: Optional[torch.FloatTensor] = None
    trusted: Optional[torch.BoolTensor] = None
    modality_alpha: Optional[torch.FloatTensor] = None
    modality_uncertainty: Optional[torch.FloatTensor] = None
    modality_confidence: Optional[torch.FloatTensor] = None
    modality_mask: Optional[torch.BoolTensor] = None
    conflict: Optional[torch.FloatTensor] = None
    modality_domain_distance: Optional[torch.FloatTensor] = None
    modality_domain_scale: Optional[torch.FloatTensor] = None


class TERPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the loading/saving machinery of transformers for TER models."""

    config_class = TERConfig
    base_model_prefix = "ter"
    # `activation_checkpointing_enable()` reaches every backbone layer that supports it (transformers'
    # `GradientCheckpointingLayer`s: Whisper, BERT, ...); the heads and the face CNN are too small to need it.
    supports_gradient_checkpointing = True

    @property
    def main_input_name(self) -> str:
        """The input that is always there for the first of the model's modalities (Trainer counts inputs with it):
        `audio_input_features` (Whisper) or `audio_input_values` (waveform backbones), `text_input_ids`,
        `video_pixel_values`, or `<modality>_embeds` for a modality without a backbone."""
        modality = self.config.modalities[0]
        encoders = self.__dict__.get("_modules", {}).get("encoders")
        if encoders is None or modality not in encoders:
            return f"{modality}_embeds"
        backbone = encoders[modality].backbone
        return f"{modality}_{getattr(backbone, 'main_input_name', 'pixel_values')}"

    def save_pretrained(self, save_directory: Union[str, os.PathLike], *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus the "trusted-emotion-recognition" pipeline when it is registered in
        this process (`import modeling_ter`): its file is copied next to the weights and config.json lists it in
        `custom_pipelines`, so `pipeline(model=save_directory, trust_remote_code=True)` works without the package."""
        from transformers.dynamic_module_utils import custom_object_save
        from transformers.pipelines import PIPELINE_REGISTRY

        if getattr(self, "encoder_quantization", "none") != "none":
            raise ValueError(
                f"This copy's encoders are quantized ({self.encoder_quantization}) for inference; save the float "
                "model it was made from."
            )

        registered = PIPELINE_REGISTRY.supported_tasks.get(PIPELINE_TASK)
        if registered is not None:
            # The entry `Pipeline.save_pretrained` writes: classes as "module.Class" / class names.
            impl = registered["impl"]
            info = {**registered, "impl": f"{impl.__module__.split('.')[-1]}.{impl.__name__}"}
            info["pt"] = tuple(model_class.__name__ for model_class in registered["pt"])
            self.config.custom_pipelines = {PIPELINE_TASK: info}
        super().save_pretrained(save_directory, *args, **kwargs)
        if registered is not None and kwargs.get("is_main_process", True):
            custom_object_save(registered["impl"], save_directory)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, TERLayerWeighting):
            nn.init.zeros_(module.layer_logits)
        else:
            super()._init_weights(module)


class TERForEmotionRecognition(TERPreTrainedModel):
    r"""TER: per-modality evidential opinions fused by confidence, with optional encoders for raw inputs.

    The checkpoint's `AutoProcessor` (`TERProcessor`) makes these inputs from raw audio, text and video; every
    modality's input comes either raw or as precomputed pooled features:

    | input | shape | what |
    |---|---|---|
    | `audio_input_features` | `(batch_size, num_mel_bins, frames)` | log-mel features (Whisper backbones) |
    | `audio_input_values` | `(batch_size, samples)` | the waveform (wav2vec2-style backbones) |
    | `audio_attention_mask` | `(batch_size, frames)` or `(batch_size, samples)` | 1 on real frames / samples |
    | `text_input_ids`, `text_attention_mask` (`text_token_type_ids`) | `(batch_size, tokens)` | the tokenized text |
    | `video_pixel_values` | `(batch_size, num_frames, channels, height, width)` | face crops (64x64 grey) |
    | `video_frame_mask` | `(batch_size, num_frames)` | `True` on frames with a face |
    | `<modality>_embeds` | `(batch_size, embed_dim)` or `(batch_size, num_feature_layers, embed_dim)` | pooled features instead of raw inputs |
    | `modality_mask` | `(batch_size, num_modalities)` bool | which modality each sample has, columns in `config.modalities` order |

    A modality without inputs, or masked out for a sample by `modality_mask`, is the vacuous opinion and drops out
    of the fusion exactly. `main_input_name` is the first modality's always-present input (e.g.
    `audio_input_features` for a Whisper audio + text model).

    Examples:

    ```python
    >>> from transformers import AutoModel, AutoProcessor
    >>> model = AutoModel.from_pretrained("path/to/ter-checkpoint", trust_remote_code=True)  # doctest: +SKIP
    >>> processor = AutoProcessor.from_pretrained("path/to/ter-checkpoint", trust_remote_code=True)  # doctest: +SKIP
    >>> inputs = processor(audio=[waveform], sampling_rate=16000, text=["I can't believe it!"])  # doctest: +SKIP
    >>> model(**inputs).confidence  # doctest: +SKIP
    ```
    """

    # "none", or how `quantize_encoders` made this copy's encoders compute.
    encoder_quantization = "none"

    def __init__(self, config: TERConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict(
            {
                m: TERModalityEncoder(config.modality_config(m))
                for m in config.modalities
                if config.modality_config(m)["backbone"]
            }
        )
        self.layer_weighting = nn.ModuleDict(
            {
                m: TERLayerWeighting(config.modality_config(m)["num_feature_layers"])
                for m in config.modalities
                if config.modality_config(m)["use_weighted_layer_sum"]
            }
        )
        self.heads = nn.ModuleDict(
            {
                m: TEREvidentialHead(
                    config.modality_config(m)["embed_dim"],
                    config.head_hidden_size,
                    config.num_labels,
                    config.head_dropout,
                )
                for m in config.modalities
            }
        )
        self.domains = nn.ModuleDict(
            {
                m: MahalanobisDomain(
                    config.num_labels,
                    config.modality_config(m)["embed_dim"],
                    config.modality_config(m)["domain_reference"],
                    config.modality_config(m)["domain_width"],
                )
                for m in config.modalities
                if config.modality_config(m)["domain_reference"] is not None
            }
        )
        self.trusted_ce = TrustedCELoss(config.num_labels, config.annealing_steps)
        self.post_init()

    @classmethod
    def from_encoders_pretrained(
        cls,
        audio: Optional[str] = None,
        text: Optional[str] = None,
        video: Optional[str] = None,
        modality_options: Optional[dict[str, dict]] = None,
        backbone_names: Optional[dict[str, str]] = None,
        **config_kwargs: Any,
    ) -> "TERForEmotionRecognition":
        """Builds a TER model around pretrained encoders (local folders or Hub IDs), loaded with `from_pretrained`.

        Args:
            audio, text, video: checkpoint of each modality's backbone; any subset.
            modality_options: extra sub-config keys per modality, e.g. `{"audio": {"use_weighted_layer_sum": True}}`.
            backbone_names: the name saved as each backbone's `_name_or_path` (e.g. the Hub ID a local folder is a
                copy of); by default a Hub ID source itself, or a folder's last path component.
            config_kwargs: further `TERConfig` arguments (`id2label`, `fusion`, ...).
        """
        sources = {m: s for m, s in zip(MODALITIES, (audio, text, video)) if s is not None}
        if not sources:
            raise ValueError("from_encoders_pretrained needs at least one of audio=, text= or video=.")
        modality_options = modality_options or {}
        unknown = sorted(set(modality_options) - set(sources))
        if unknown:
            raise ValueError(f"modality_options names {unknown}, which have no encoder here ({sorted(sources)}).")
        names = backbone_names or {}
        pretrained = {m: load_pretrained_backbone(source, names.get(m)) for m, source in sources.items()}
        modality_configs = {
            m: {"backbone": backbone_config, **modality_options.get(m, {})}
            for m, (backbone_config, _) in pretrained.items()
        }
        model = cls(TERConfig(modality_configs=modality_configs, **config_kwargs))
        for modality, (_, state_dict) in pretrained.items():
            model.encoders[modality].backbone.load_state_dict(state_dict)
        return model

    def quantize_encoders(self, quantization: str = "dynamic_int8") -> "TERForEmotionRecognition":
        """A copy of this model for inference whose encoders' linear layers compute in int8 (this model is unchanged).

        `"dynamic_int8"`: `torch.ao.quantization.quantize_dynamic` replaces every `nn.Linear` of every backbone
        (Whisper's attention and feed-forward layers, the text encoder's) by one with int8 weights that quantizes
        its input on the fly (CPU); convolutions, layer norms, the heads, the domain gates and the fusion stay
        float32. `"none"` returns this model itself. The copy computes, it does not train or save:
        `save_pretrained` of it raises (save the float model). Its accuracy and speed against float32:
        README, "Inference speed".
        """
        if quantization not in ENCODER_QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {ENCODER_QUANTIZATIONS}, got {quantization!r}.")
        if quantization == "none":
            return self
        if self.encoder_quantization != "none":
            raise ValueError(f"The encoders are already quantized ({self.encoder_quantization}).")
        import copy
        import importlib
        import warnings

        # Imported by name: torch marks `torch.ao.quantization` deprecated (in favour of torchao, not a dependency).
        quantization_module = importlib.import_module("torch.ao.quantization")
        quantized = copy.deepcopy(self).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            quantized.encoders = quantization_module.quantize_dynamic(
                quantized.encoders, {nn.Linear}, dtype=torch.qint8
            )
        quantized.encoder_quantization = quantization
        return quantized

    def embed_modality(self, modality: str, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled features `(batch, num_feature_layers, embed_dim)` of one modality's raw inputs (for caching)."""
        if modality not in self.encoders:
            raise ValueError(
                f"The {modality} modality of this model has no backbone (configured: {sorted(self.encoders)}); "
                f"pass precomputed `{modality}_embeds` instead."
            )
        return self.encoders[modality](**inputs)

    def _modality_features(self, raw_inputs: dict, embeds: dict) -> dict[str, torch.Tensor]:
        """Pooled features `(batch, L, dim)` for every modality that received an input."""
        features = {}
        for modality in MODALITIES:
            given = {name: value for name, value in raw_inputs[modality].items() if value is not None}
            if embeds[modality] is None and not given:
                continue
            if modality not in self.config.modalities:
                raise ValueError(
                    f"Got {modality} inputs, but this model has no {modality} modality (it has "
                    f"{list(self.config.modalities)}); drop those inputs."
                )
            if embeds[modality] is not None and given:
                raise ValueError(f"Pass either {modality}_embeds or raw {modality} inputs, not both.")
            # Data-dependent checks would stop torch.export and torch.compile(fullgraph=True): skipped while tracing.
            checked = {} if torch.compiler.is_compiling() else {**given, "embeds": embeds[modality]}
            for name, value in checked.items():
                if value is not None and value.is_floating_point() and not torch.isfinite(value).all():
                    bad = (~torch.isfinite(value)).flatten(1).any(1).nonzero().flatten().tolist()
                    raise ValueError(
                        f"{modality}_{name} holds NaN or inf for samples {bad}; fix those inputs or mask the "
                        f"{modality} modality for them with modality_mask."
                    )
            if embeds[modality] is not None:
                features[modality] = self._check_embeds(modality, embeds[modality])
            else:
                if "input_values" in given and "input_features" in given:
                    raise ValueError("Pass either audio_input_features or audio_input_values, not both.")
                features[modality] = self.embed_modality(modality, **given)
        if not features:
            raise ValueError(
                f"No input for any modality; give at least one of {list(self.config.modalities)} "
                "(raw inputs or <modality>_embeds)."
            )
        batch_sizes = {m: f.shape[0] for m, f in features.items()}
        if any(size != next(iter(batch_sizes.values())) for size in batch_sizes.values()):  # SymInts don't hash
            raise ValueError(f"The modalities disagree on the batch size: {batch_sizes}.")
        return features

    def _check_embeds(self, modality: str, embeds: torch.Tensor) -> torch.Tensor:
        modality_config = self.config.modality_config(modality)
        embed_dim, num_layers = modality_config["embed_dim"], modality_config["num_feature_layers"]
        layered = embeds.unsqueeze(1) if embeds.dim() == 2 else embeds
        if layered.dim() != 3 or layered.shape[1:] != (num_layers, embed_dim):
            expected = f"(batch, {embed_dim})" if num_layers == 1 else f"(batch, {num_layers}, {embed_dim})"
            raise ValueError(
                f"{modality}_embeds has shape {tuple(embeds.shape)}, but this model expects {expected} "
                f"({modality}_config: embed_dim={embed_dim}, num_feature_layers={num_layers})."
            )
        return layered

    def _modality_mask(
        self, features: dict[str, torch.Tensor], modality_mask: Optional[torch.Tensor], batch_size: int, device
    ) -> torch.Tensor:
        modalities = self.config.modalities
        has_input = torch.tensor([m in features for m in modalities], device=device).expand(batch_size, -1)
        if modality_mask is None:
            return has_input
        if tuple(modality_mask.shape) != (batch_size, len(modalities)):
            raise ValueError(
                f"modality_mask has shape {tuple(modality_mask.shape)}, expected ({batch_size}, {len(modalities)}): "
                f"one column per modality in the order {list(modalities)}."
            )
        return modality_mask.to(device=device, dtype=torch.bool) & has_input

    def forward(
        self,
        audio_input_features: Optional[torch.FloatTensor] = None,
        audio_input_values: Optional[torch.FloatTensor] = None,
        audio_attention_mask: Optional[torch.LongTensor] = None,
        text_input_ids: Optional[torch.LongTensor] = None,
        text_attention_mask: Optional[torch.LongTensor] = None,
        text_token_type_ids: Optional[torch.LongTensor] = None,
        video_pixel_values: Optional[torch.FloatTensor] = None,
        video_frame_mask: Optional[torch.BoolTensor] = None,
        audio_embeds: Optional[torch.FloatTensor] = None,
        text_embeds: Optional[torch.FloatTensor] = None,
        video_embeds: Optional[torch.FloatTensor] = None,
        modality_mask: Optional[torch.BoolTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        global_step: Optional[int] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[TEROutput, tuple]:
        r"""
        Args:
            modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`, *optional*):
                Which modality is present for each sample, columns in the order of `config.modalities`.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): Class ids; a loss is returned with them.
            global_step (`int`, *optional*): The optimizer step, for the KL annealing of the loss; `None` means
                fully annealed (KL weight 1).
        """
        raw_inputs = {
            "audio": {
                "input_features": audio_input_features,
                "input_values": audio_input_values,
                "attention_mask": audio_attention_mask,
            },
            "text": {
                "input_ids": text_input_ids,
                "attention_mask": text_attention_mask,
                "token_type_ids": text_token_type_ids,
            },
            "video": {"pixel_values": video_pixel_values, "frame_mask": video_frame_mask},
        }
        embeds = {"audio": audio_embeds, "text": text_embeds, "video": video_embeds}
        features = self._modality_features(raw_inputs, embeds)
        reference = next(iter(features.values()))
        batch_size, device = reference.shape[0], reference.device
        present = self._modality_mask(features, modality_mask, batch_size, device)
        tracing = torch.compiler.is_compiling()  # torch.export / torch.compile: no data-dependent check
        missing_everything = [] if tracing else (~present.any(1)).nonzero().flatten().tolist()
        if missing_everything:
            raise ValueError(
                f"Samples {missing_everything} have no modality present; every sample needs at least one of "
                f"{list(self.config.modalities)}. Drop those samples."
            )

        evidence, distance, domain_scale = self.modality_evidence(features, present)
        output = self.fuse(evidence, present, labels, global_step, distance, domain_scale)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    def pool_layers(self, modality: str, layer_features: torch.Tensor) -> torch.Tensor:
        """What the modality's head reads: its pooled layers `(batch, num_feature_layers, embed_dim)` through the
        learned layer weighting, or the last layer; returns `(batch, embed_dim)`."""
        if modality in self.layer_weighting:
            return self.layer_weighting[modality](layer_features)
        return layer_features[:, -1]

    def modality_evidence(
        self, features: dict[str, torch.Tensor], present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each modality's evidence from its pooled features, through its layer weighting, head, domain gate and
        evidence temperature; no data-dependent control flow (so `torch.func.vmap` and tracing can go through it).

        Args:
            features: `{modality: (batch_size, num_feature_layers, embed_dim)}` for the modalities with inputs.
            present (`torch.BoolTensor` of shape `(batch_size, num_modalities)`): which modalities count.

        Returns:
            The evidence `(batch_size, num_modalities, num_labels)` (zero where absent), the domain distance and the
            domain scale `(batch_size, num_modalities)`.
        """
        reference = next(iter(features.values()))
        absent = reference.new_zeros(present.shape[0])
        evidence, distance, domain_scale = [], [], []
        for index, modality in enumerate(self.config.modalities):
            if modality not in features:
                evidence.append(reference.new_zeros(present.shape[0], self.config.num_labels))
                distance.append(absent)
                domain_scale.append(absent)
                continue
            pooled = self.pool_layers(modality, features[modality])
            pooled = torch.where(present[:, index, None], pooled, torch.zeros_like(pooled))
            scale = present[:, index].to(reference.dtype)
            modality_distance = absent
            if modality in self.domains:
                modality_distance = self.domains[modality].distance(pooled).to(reference.dtype)
                scale = scale * self.domains[modality].evidence_scale(pooled, modality_distance)
            evidence.append(self.heads[modality](pooled) * (scale * self.config.evidence_factor(modality))[:, None])
            distance.append(modality_distance)
            domain_scale.append(scale)
        evidence, distance, domain_scale = (torch.stack(values, 1) for values in (evidence, distance, domain_scale))
        return evidence, distance, domain_scale

    def fuse(
        self,
        evidence: torch.Tensor,
        present: torch.Tensor,
        labels: Optional[torch.LongTensor] = None,
        global_step: Optional[int] = None,
        domain_distance: Optional[torch.Tensor] = None,
        domain_scale: Optional[torch.Tensor] = None,
    ) -> TEROutput:
        """The output for given per-modality evidence: opinions, their fusion, confidence, trust, conflict, loss.

        Args:
            evidence (`torch.FloatTensor` of shape `(batch_size, num_modalities, num_labels)`): non-negative evidence
                of each modality (`modality_alpha - 1` of an earlier output, already through the domain gates), zero
                where absent.
            present (`torch.BoolTensor` of shape `(batch_size, num_modalities)`): which modalities are present.
            labels, global_step: as in `forward`.
            domain_distance, domain_scale (`torch.FloatTensor` of shape `(batch_size, num_modalities)`, *optional*):
                what the domain gates measured, reported as given (zeros and the presence mask when not given).
        """
        evidence = evidence * present.unsqueeze(-1)
        if domain_distance is None:
            domain_distance = torch.zeros(present.shape, dtype=evidence.dtype, device=evidence.device)
        if domain_scale is None:
            domain_scale = present.to(evidence.dtype)
        modality_alpha, _, modality_uncertainty = opinion_from_evidence(evidence)
        alpha = fuse_opinions(evidence, present, self.config.fusion)
        strength = alpha.sum(-1, keepdim=True)
        probs = alpha / strength
        uncertainty = (self.config.num_labels / strength).squeeze(-1)
        slope, intercept = self.config.confidence_calibration or (1.0, 0.0)
        confidence = calibrated_confidence(alpha, self.config.confidence_measure, slope, intercept)
        trusted = None if self.config.trusted_threshold is None else confidence >= self.config.trusted_threshold

        loss = None
        if labels is not None:
            self._check_labels(labels, alpha.shape[0])
            loss = self.trusted_ce_loss(alpha, modality_alpha, present, labels, global_step)

        return TEROutput(
            loss=loss,
            logits=torch.log(probs),
            alpha=alpha,
            probs=probs,
            uncertainty=uncertainty,
            confidence=confidence,
            trusted=trusted,
            modality_alpha=modality_alpha,
            modality_uncertainty=modality_uncertainty,
            modality_confidence=calibrated_confidence(modality_alpha, self.config.confidence_measure, slope, intercept),
            modality_mask=present,
            conflict=pairwise_conflict(evidence, present),
            modality_domain_distance=domain_distance,
            modality_domain_scale=domain_scale,
        )

    def combine_windows(self, evidence: torch.Tensor, present: torch.Tensor, rule: str) -> torch.Tensor:
        """Pools the opinions of one modality over consecutive windows of a long input into one opinion.

        Args:
            evidence (`torch.FloatTensor` of shape `(num_windows, num_labels)`): each window's evidence.
            present (`torch.BoolTensor` of shape `(num_windows,)`): the windows that count (a silent one does not).
            rule (`str`): `"tempered_dempster_shafer"` (the `n` counted windows as one witness split into `n`: each
                window's evidence divided by `n`, then Dempster-Shafer; agreeing windows raise the confidence above
                one window's, to a bound that does not grow with `n`: `e = K (exp(mean_w e_w / K) - 1)` as
                `n -> inf`), `"dempster_shafer"` (windows as independent witnesses: evidence grows exponentially
                with their number, see `dempster_shafer_pool`) or `"evidence_average"` (the mean evidence of the
                counted windows).

        Returns:
            `torch.FloatTensor` of shape `(num_labels,)`: the pooled evidence.
        """
        if rule == "tempered_dempster_shafer":
            return dempster_shafer_pool(evidence / present.sum().clamp_min(1), present)
        if rule == "dempster_shafer":
            return dempster_shafer_pool(evidence, present)
        if rule == "evidence_average":
            return fuse_opinions(evidence.unsqueeze(0), present.unsqueeze(0), rule)[0] - 1.0
        raise ValueError(
            "Windows are combined by 'tempered_dempster_shafer', 'dempster_shafer' or 'evidence_average', got "
            f"{rule!r}."
        )

    def _check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        if labels.shape != (batch_size,):
            raise ValueError(f"labels has shape {tuple(labels.shape)}, expected ({batch_size},).")
        if torch.compiler.is_compiling():
            return
        if labels.is_floating_point() or labels.min() < 0 or labels.max() >= self.config.num_labels:
            raise ValueError(
                f"labels must be integer class ids in [0, {self.config.num_labels - 1}] (config.id2label), got "
                f"{sorted(set(labels.tolist()))}."
            )

    def trusted_ce_loss(
        self, alpha: torch.Tensor, modality_alpha: torch.Tensor, present: torch.Tensor, labels: torch.Tensor, step
    ) -> torch.Tensor:
        """Trusted CE of the fused opinion `alpha` `(batch, K)` plus that of each present modality
        (`modality_alpha` `(batch, M, K)`), averaged over the batch with `config.class_weights` of each sample's
        class (if set); `step` as `global_step` in `forward`."""
        # One loss call over the fused and every modality's opinion (batch * (1 + M) rows): a training step is a few
        # hundred small tensor operations, so their count, not their size, is its cost.
        num_opinions = 1 + modality_alpha.shape[1]
        opinions = torch.cat([alpha.unsqueeze(1), modality_alpha], 1).flatten(0, 1)
        per_opinion = self.trusted_ce(opinions, labels.repeat_interleave(num_opinions), step).view(-1, num_opinions)
        per_sample = per_opinion[:, 0]
        for index in range(modality_alpha.shape[1]):
            per_sample = per_sample + per_opinion[:, 1 + index] * present[:, index]
        if self.config.class_weights is not None:
            per_sample = per_sample * alpha.new_tensor(self.config.class_weights)[labels]
        return per_sample.mean()


__all__ = ["TERForEmotionRecognition", "TERPreTrainedModel", "TEROutput"]
