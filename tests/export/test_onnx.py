"""ONNX export (scripts/export_onnx.py) of a checkpoint with the default encoders, run by onnxruntime behind the
trusted-emotion-recognition pipeline: the PyTorch pipeline's outputs on demo items of 0.5 to 30 s in one batch, and
its errors on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline

from modeling_ter.encoders.defaults import build_default_model, build_default_processor
from modeling_ter.export import ONNXTERModel, onnx_pipeline
from modeling_ter.export.parity import compare_results, length_extremes

pytest.importorskip("onnxruntime", reason="pip install onnxruntime onnxscript")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
EMODB = [DATA / "emodb" / "wav" / name for name in ("03a01Fa.flac", "03a05Wa.flac")]
CREMA_AUDIO = DATA / "crema_d" / "AudioWAV_16k" / "1001_DFA_HAP_XX.flac"
CREMA_VIDEO = DATA / "crema_d" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
GERMAN = "Der Lappen liegt auf dem Eisschrank."
ITEMS = [
    *length_extremes(EMODB[0], GERMAN),  # 0.5 s and 30 s
    {"audio": str(EMODB[0]), "text": GERMAN},
    {"audio": str(EMODB[1]), "text": "Heute abend könnten wir uns treffen."},
    {"audio": str(CREMA_AUDIO), "text": "Don't forget a jacket", "video": str(CREMA_VIDEO)},
    {"text": "Oh my God, this is the best day of my life!"},
    {"audio": str(EMODB[1])},
]


def threshold_between(confidences: list[float]) -> float:
    """The middle of the widest gap between consecutive confidences of the middle half: some items trusted, some
    not, none within rounding of the threshold."""
    ordered = sorted(confidences)
    middle = range(max(1, len(ordered) // 4), max(2, 3 * len(ordered) // 4 + 1))
    low = max(middle, key=lambda i: ordered[i] - ordered[i - 1])
    return (ordered[low - 1] + ordered[low]) / 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`(reference pipeline, its results on ITEMS, checkpoint folder, export folder)`, exported by the script."""
    torch.manual_seed(0)
    model = build_default_model(head_hidden_size=8).eval()
    processor = build_default_processor()
    reference = pipeline("trusted-emotion-recognition", model=model, processor=processor)
    model.config.trusted_threshold = threshold_between([reference(item)["confidence"] for item in ITEMS])
    results = [reference(item) for item in ITEMS]
    checkpoint, onnx_dir = tmp_path_factory.mktemp("checkpoint"), tmp_path_factory.mktemp("onnx")
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    command = [sys.executable, "scripts/export_onnx.py", "--model", str(checkpoint), "--output", str(onnx_dir)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    return reference, results, checkpoint, onnx_dir


@pytest.fixture(scope="module")
def recognizer(exported):
    return onnx_pipeline(exported[3], num_threads=2)


def test_graphs_have_dynamic_batch_and_length_axes(exported):
    manifest = json.loads((exported[3] / "onnx_export.json").read_text())
    assert set(manifest["encoders"]) == {"audio", "text", "video"}
    model = ONNXTERModel(exported[3])
    inputs = {i.name: i.shape for i in model.encoders["audio"].get_inputs()}
    assert inputs["audio_input_features"][1] == 80
    for name, shape in inputs.items():
        batch, length = shape[0], shape[-1]
        assert isinstance(batch, str) and isinstance(length, str), (name, shape)  # symbolic, not fixed
    assert all(isinstance(i.shape[0], str) for i in model.fusion.get_inputs())
    assert manifest["difference_to_pytorch"]["probs"] <= 1e-4


def test_onnx_batch_of_unequal_lengths_matches_pytorch_item_by_item(exported, recognizer):
    _, expected, _, _ = exported
    assert {r["trusted"] for r in expected} == {True, False}  # the threshold splits the items
    actual = recognizer(ITEMS, batch_size=len(ITEMS))  # 0.5 s to 30 s, with and without each modality, one batch
    report = compare_results(expected, actual)
    assert report["max_abs_probability"] <= 1e-4 and report["max_abs_confidence"] <= 1e-4, report
    assert report["label_mismatches"] == [] and report["trust_mismatches"] == [], report
    for a, b in zip(expected, actual):
        assert a.keys() == b.keys()
        for modality, entry in a["modalities"].items():
            other = b["modalities"][modality]
            assert (entry["present"], entry["label"]) == (other["present"], other["label"])
            if entry["present"]:
                assert entry["confidence"] == pytest.approx(other["confidence"], abs=1e-4)
        assert (a["conflict"]["max"] is None) == (b["conflict"]["max"] is None)


def test_bad_inputs_give_the_pipelines_errors(exported, recognizer, tmp_path):
    reference = exported[0]
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"not audio at all")
    bad_inputs = [
        "just a string",
        {"image": "x.png"},
        {"text": "   "},
        {"audio": str(tmp_path / "missing.flac")},
        {"audio": str(corrupt)},
        {"audio": np.zeros(16000, dtype=np.float32)},  # an array without its sampling rate
        {"audio": {"array": np.full(16000, np.nan, dtype=np.float32), "sampling_rate": 16000}},
        {"text": 42},
    ]
    for bad in bad_inputs:
        errors = []
        for candidate in (reference, recognizer):
            with pytest.raises(Exception) as caught:
                candidate(bad)
            errors.append((type(caught.value), str(caught.value)))
        assert errors[0] == errors[1], bad
        assert "Traceback" not in errors[1][1] and len(errors[1][1]) > 20


def test_parity_script_over_manifest_items(exported):
    _, _, checkpoint, onnx_dir = exported
    command = [sys.executable, "scripts/onnx_parity.py", "--model", str(checkpoint), "--onnx", str(onnx_dir)]
    run = subprocess.run(
        [*command, "--max_items", "2", "--batch_size", "4"], cwd=REPO, capture_output=True, text=True, timeout=1200
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout[run.stdout.index("{") :])
    assert report["n"] == 4 and report["corpus_items"] == 2  # the two length extremes and two emodb items
    assert max(report["max_abs_probability"], report["max_abs_confidence"]) <= 1e-4


def test_folder_without_an_export_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/export_onnx.py --model"):
        ONNXTERModel(tmp_path)
