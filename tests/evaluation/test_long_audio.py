"""Long clips in `scripts/evaluate.py`: a clip longer than the window is scored as the pipeline scores it.

The clip is four EmoDB utterances from data/ with silence between them (14 s), scored by a tiny random checkpoint
(Whisper + BERT, the real processor). Each corpus of the manifest holds one item, so its report entry gives that
item's fused label (accuracy 1 or 0) and confidence (ECE of one item = |correct - confidence|)."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from tiny_models import tiny_bert_config, tiny_whisper_config
from transformers import pipeline

from modeling_ter import TERConfig, TERForEmotionRecognition
from modeling_ter.encoders.defaults import build_default_processor
from modeling_ter.processing.audio import load_audio

REPO_ROOT = Path(__file__).resolve().parents[2]
EMODB = REPO_ROOT / "data" / "emodb" / "wav"
UTTERANCES = ["03a01Wa.flac", "03a04Wc.flac", "03a05Wa.flac", "03b01Wa.flac"]  # speaker 03, anger
LABELS = ("anger", "happiness", "neutral", "sadness")
TRANSCRIPT = "Der Lappen liegt auf dem Eisschrank."
# scripts/evaluate.py under another name: `import evaluate` is the 🤗 library (scripts/ stays off sys.path).
_spec = importlib.util.spec_from_file_location("evaluate_script", REPO_ROOT / "scripts" / "evaluate.py")
evaluate_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate_script)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    processor = build_default_processor(("audio", "text"))
    bert = tiny_bert_config(vocab_size=processor.tokenizer.vocab_size)
    config = TERConfig(
        modality_configs={
            "audio": {"backbone": tiny_whisper_config(max_source_positions=1500).to_dict()},
            "text": {"backbone": bert.to_dict()},
        },
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
        head_hidden_size=8,
        trusted_threshold=0.3,
    )
    model = TERForEmotionRecognition(config).eval()
    with torch.no_grad():  # large head weights: windows then give clearly different opinions (random ones are ~vacuous)
        for parameter in model.heads.parameters():
            parameter.normal_(0.0, 3.0)
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """One long clip (corpus "long") and one of its utterances alone (corpus "short")."""
    folder = tmp_path_factory.mktemp("long_audio")
    pieces = [load_audio(EMODB / name) for name in UTTERANCES]
    gap, pause = np.zeros(4800, np.float32), np.zeros(80000, np.float32)  # 0.3 s between utterances, a 5 s pause
    clip = np.concatenate([pieces[0], gap, pieces[1], pause, pieces[2], gap, pieces[3], gap])
    soundfile.write(folder / "long.flac", clip, 16000)
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["corpus", "path", "label", "speaker_id", "modality_files", "transcript", "language"])
        writer.writerow(["long", "long.flac", "anger", "emodb_03", "long.flac", TRANSCRIPT, "de"])
        short = str(EMODB / UTTERANCES[0])
        writer.writerow(["short", short, "anger", "emodb_03", short, TRANSCRIPT, "de"])
    return path


def item_result(entry: dict) -> tuple[bool, float]:
    """(correct, confidence) of a report entry of one item."""
    assert entry["n"] == 1
    correct = entry["accuracy"] == 1.0
    return correct, (1.0 - entry["ece"]) if correct else entry["ece"]


@pytest.mark.parametrize(
    "options",
    [{}, {"chunk_length_s": 2.0, "stride_length_s": 0.25, "window_fusion": "dempster_shafer"}],
    ids=["defaults", "2s-dempster-shafer"],
)
def test_evaluate_scores_a_long_clip_as_the_pipeline_does(checkpoint, manifest, options, tmp_path):
    flags = [f"--{name}={value}" for name, value in options.items()]
    output = tmp_path / "eval.json"
    evaluate_script.main(
        ["--model", str(checkpoint), "--manifest", str(manifest), "--output_json", str(output), "--cache_dir"]
        + [str(tmp_path / "cache"), *flags]
    )
    report = json.loads(output.read_text())
    classify = pipeline("trusted-emotion-recognition", model=str(checkpoint))
    long_clip = {"audio": str(manifest.parent / "long.flac"), "text": TRANSCRIPT}
    expected = classify(long_clip, **options, return_windows=True)
    assert len(expected["windows"]) > 4 and not all(w["speech"] for w in expected["windows"])  # windowed, pause masked
    correct, confidence = item_result(report["corpora"]["long"]["fused"])
    assert correct == (expected["label"] == "anger")
    assert confidence == pytest.approx(expected["confidence"], abs=2e-4)
    # The audio opinion alone too (the modality ablation): the pooled windows, not the clip's first 30 s.
    audio_correct, audio_confidence = item_result(report["corpora"]["long"]["audio"])
    assert audio_confidence == pytest.approx(expected["modalities"]["audio"]["confidence"], abs=2e-4)
    assert audio_correct == (expected["modalities"]["audio"]["label"] == "anger")
    # Scoring the clip whole (what evaluation did before) gives another opinion: this test tells them apart.
    whole = classify(long_clip, chunk_length_s=30.0)
    assert abs(whole["modalities"]["audio"]["confidence"] - audio_confidence) > 0.01
    # A clip that fits one window is the same item as before, from the feature cache.
    short = classify({"audio": str(EMODB / UTTERANCES[0]), "text": TRANSCRIPT}, **options)
    assert item_result(report["corpora"]["short"]["fused"])[1] == pytest.approx(short["confidence"], abs=2e-4)


def test_bad_window_options_are_refused(checkpoint, manifest, tmp_path):
    common = ["--model", str(checkpoint), "--manifest", str(manifest), "--output_json", str(tmp_path / "e.json")]
    for flags in (["--chunk_length_s", "0"], ["--chunk_length_s", "2", "--stride_length_s", "1"]):
        with pytest.raises(SystemExit):
            evaluate_script.parse_args(common + flags)
    with pytest.raises(SystemExit):
        evaluate_script.parse_args(common + ["--window_fusion", "max"])
