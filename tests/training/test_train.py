"""End-to-end tests of the main job (scripts/train.py, scripts/evaluate.py) and of the feature cache, on real data
(a small subset of the embedded demo corpus, data/manifest.csv) and the real pretrained encoders.

Tolerances: a resumed run and an uninterrupted run with the same seed agree to 1e-6 on every metric (same
arithmetic, same order); a 2-process gloo DDP run and a 1-process run with the same effective batch agree to 1e-4 on
every metric (gradients are averaged across processes instead of within one batch: float summation order differs).
Both comparisons use `--head_dropout 0`, so that no per-process dropout mask can make them differ.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from modeling_ter.data.feature_cache import (
    CLAIM_TIMEOUT_S,
    FeatureCache,
    batch_claim_path,
    compute_features,
    encode_missing,
    encoder_key,
    encoding_plan,
    item_key,
    processor_settings,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_MANIFEST = REPO / "data" / "manifest.csv"
SHARED = REPO.parent / "shared"
METRIC_KEYS = {
    "n",
    "accuracy",
    "macro_f1",
    "uar",
    "trusted_precision",
    "trusted_recall",
    "trusted_f1",
    "trusted_accuracy",
    "threshold",
    "coverage",
    "aurc",
    "augrc",
    "ece",
}
RESUME_TOLERANCE = 1e-6
DDP_TOLERANCE = 1e-4
EPOCHS = 2

pytestmark = pytest.mark.skipif(not DEMO_MANIFEST.is_file(), reason=f"the demo corpus {DEMO_MANIFEST} is absent")


def _subset_manifest(folder: Path) -> Path:
    """A small real manifest: EmoDB 3 speakers x 4, MELD 4 speakers x 2 and 1 x 1, CREMA-D 2 clips, plus one corrupt
    audio file and one corrupt video file (which must be masked, not crash). Paths are absolute. With a noisy copy
    of each decodable clip, 40 items are trained on: the DDP comparison needs an even number."""
    with open(DEMO_MANIFEST, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def absolute(files: str) -> str:
        return ";".join(str(DEMO_MANIFEST.parent / p) if p != "text" else p for p in files.split(";"))

    chosen, taken = [], {}
    quota = {"emodb": (("emodb_03", "emodb_08", "emodb_09"), 4), "meld": (None, 2), "crema_d": (None, 2)}
    meld_speakers = ("meld_Rachel", "meld_Ross", "meld_Joey", "meld_Monica", "meld_Chandler")
    for row in rows:
        speakers, per_speaker = quota[row["corpus"]]
        speakers = meld_speakers if row["corpus"] == "meld" else speakers
        per_speaker = 1 if row["speaker_id"] == "meld_Chandler" else per_speaker
        key = (row["corpus"], row["speaker_id"])
        labels = taken.setdefault(key, set())
        if (
            (speakers is None or row["speaker_id"] in speakers)
            and len(labels) < per_speaker
            and row["label"] not in labels
        ):
            labels.add(row["label"])
            chosen.append(
                {
                    **row,
                    "path": str(DEMO_MANIFEST.parent / row["path"]) if row["modality_files"] != "text" else row["path"],
                    "modality_files": absolute(row["modality_files"]),
                }
            )
    corrupt_audio, corrupt_video = folder / "corrupt.flac", folder / "corrupt.flv"
    corrupt_audio.write_bytes(os.urandom(4000))
    corrupt_video.write_bytes(os.urandom(4000))
    crema = next(row for row in chosen if row["corpus"] == "crema_d")
    real_audio = crema["modality_files"].split(";")[1]
    chosen.append({**chosen[0], "path": str(corrupt_audio), "modality_files": str(corrupt_audio), "label": "anger"})
    chosen.append({**crema, "path": str(corrupt_video), "modality_files": f"{corrupt_video};{real_audio}"})
    manifest = folder / "subset.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return manifest


def _run(command: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def _arguments(*argv: str):
    """`scripts/train.py`'s command line, parsed into `TERTrainingArguments` the way the script does."""
    from transformers import HfArgumentParser

    from modeling_ter.training.arguments import TERTrainingArguments

    parser = HfArgumentParser(TERTrainingArguments)
    parser.set_defaults(manifest=str(DEMO_MANIFEST))
    return parser.parse_args_into_dataclasses(list(argv), look_for_args_file=False)[0]


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, list):
            flat.update(_flatten(dict(enumerate(value)), f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _assert_close(left: dict, right: dict, tolerance: float) -> None:
    left, right = _flatten(left), _flatten(right)
    assert left.keys() == right.keys()

    def close(a, b) -> bool:
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
        return math.isclose(a, b, abs_tol=tolerance) if numbers else a == b  # e.g. None where nothing is trusted

    different = {k: (left[k], right[k]) for k in left if not close(left[k], right[k])}
    assert not different, f"metrics differ beyond {tolerance}: {different}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def subset(workdir) -> dict:
    """The subset manifest and an effective batch that divides the items trained on (so DDP needs no padded batch):
    the train split and a noisy copy of each item whose audio decodes (`--augment noise`, the default)."""
    from modeling_ter.data.manifest import load_manifest_dataset
    from modeling_ter.processing.audio import AudioDecodeError, load_audio

    def decodes(path: str | None) -> bool:
        try:
            return path is not None and len(load_audio(path)) > 0
        except AudioDecodeError:
            return False

    manifest = _subset_manifest(workdir)
    train = load_manifest_dataset(manifest, validation_fraction=0.0, seed=0)["train"]
    num_trained = len(train) + sum(map(decodes, train["audio"]))
    batch = next((b for b in (4, 2) if num_trained % b == 0), None)
    assert batch is not None, f"the subset ({num_trained} items trained on) must be even for the DDP comparison"
    return {"manifest": manifest, "batch": batch}


def _train_args(subset: dict, workdir: Path, output_dir: Path, batch_size: int) -> list[str]:
    return [
        "scripts/train.py",
        "--output_dir",
        str(output_dir),
        "--manifest",
        str(subset["manifest"]),
        "--epochs",
        str(EPOCHS),
        "--batch_size",
        str(batch_size),
        "--head_dropout",
        "0",
        "--seed",
        "0",
        "--cache_dir",
        str(workdir / "cache"),
    ]


@pytest.fixture(scope="module")
def trained(subset, workdir) -> dict:
    """One uninterrupted 1-process run on a cold feature cache."""
    output_dir = workdir / "run"
    result = _run([sys.executable, *_train_args(subset, workdir, output_dir, subset["batch"])])
    return {"dir": output_dir, "stdout": result.stdout, "manifest": subset["manifest"]}


def test_checkpoint_is_complete(trained):
    out = trained["dir"]
    config = json.loads((out / "config.json").read_text())
    assert config["trusted_threshold_strategy"] == "break_even"
    assert 0.0 <= config["trusted_threshold"] <= 1.0
    assert set(config["id2label"].values()) <= {
        "anger",
        "boredom",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
    }
    assert config["modality_configs"]["audio"]["backbone"]["model_type"] == "whisper"
    assert config["modality_configs"]["video"]["backbone"]["model_type"] == "ter_face_cnn"
    assert {"configuration_ter.py", "modeling_ter.py"} <= {p.name for p in out.iterdir()}
    assert "AutoModel" in config["auto_map"]
    with safe_open(str(out / "model.safetensors"), framework="pt") as weights:
        keys = set(weights.keys())
    for prefix in (
        "encoders.audio.",
        "encoders.text.",
        "encoders.video.",
        "heads.audio.",
        "heads.text.",
        "heads.video.",
    ):
        assert any(key.startswith(prefix) for key in keys), prefix
    assert (out / "processor_config.json").is_file() and (out / "tokenizer.json").is_file()
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "reliability_diagram.png",
        "risk_coverage.png",
        "trusted_metrics_vs_threshold.png",
    ]
    card = (out / "README.md").read_text()
    assert "Trusted" in card
    # What it trained on, as the card states it: counted from the manifest's splits.
    training_data = json.loads((out / "training_data.json").read_text())
    for corpus, counts in training_data["corpora"].items():
        row = next(line for line in card.splitlines() if f"(`{corpus}`)" in line and line.startswith("| "))
        items = " / ".join(f"{split} {n['items']}" for split, n in counts["splits"].items())
        assert f"| {items} |" in row, (corpus, row)
    assert {"processing_ter.py", "audio.py", "video.py", "trusted_emotion_recognition.py"} <= {
        p.name for p in out.iterdir()
    }
    assert "trusted-emotion-recognition" in config["custom_pipelines"]
    assert json.loads((out / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "processing_ter.TERProcessor"
    }
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results["overall"]) == METRIC_KEYS | {"thresholds"}
    assert set(results["overall"]["thresholds"]) == {"max_f1", "break_even", "target_precision"}
    assert results["overall"]["threshold"] == config["trusted_threshold"]
    assert results["overall"]["thresholds"]["break_even"]["threshold"] == config["trusted_threshold"]
    # Cross-fitted calibration: every item scored by heads that never saw its speaker; E* by held-out NLL; the
    # audio domain gate (statistics in the weights, reference and width in the config); a temperature.
    calibration = results["calibration"]
    assert calibration["folds"] == 5 and len(calibration["held_out_nll"]) == EPOCHS
    assert calibration["epochs"] == 1 + min(range(EPOCHS), key=calibration["held_out_nll"].__getitem__)
    with open(trained["manifest"], newline="", encoding="utf-8") as f:
        assert results["overall"]["n"] == sum(1 for _ in csv.DictReader(f))
    audio = config["modality_configs"]["audio"]
    assert audio["domain_width"] > 0 and audio["domain_reference"] > 0
    assert calibration["domain_gates"] == {"audio": {k: audio[k] for k in ("domain_reference", "domain_width")}}
    assert config["modality_configs"]["text"]["domain_reference"] is None
    assert config["confidence_calibration"][0] == 1.0 and config["confidence_measure"] == "belief"
    assert {"domains.audio.whitening", "domains.audio.whitened_means"} <= keys
    # Epoch states: one per epoch of the final heads, holding the heads only (the frozen encoders never change).
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"epoch_{e}" for e in range(1, calibration["epochs"] + 1)
    ]
    for epoch in range(1, calibration["epochs"] + 1):
        state = out / "checkpoints" / f"epoch_{epoch}"
        with safe_open(str(state / "model.safetensors"), framework="pt") as weights:
            state_keys = set(weights.keys())
        assert state_keys and not any(key.startswith("encoders.") for key in state_keys)
        assert (state / "custom_checkpoint_0.pkl").is_file()
    assert not [p for p in out.rglob("*") if "incomplete" in p.name or p.suffix == ".tmp"]


def test_failed_modalities_are_masked_with_a_reason(trained):
    masked = [line for line in trained["stdout"].splitlines() if " masked (" in line]
    assert len(masked) == 2, masked
    assert any(": audio masked (" in line and "corrupt.flac" in line for line in masked)
    assert any(": video masked (" in line and "corrupt.flv" in line for line in masked)
    assert "epoch 1: train loss" in trained["stdout"]


def test_remote_code_loads_in_another_project_and_evaluate_writes_the_layout(trained, workdir):
    out = trained["dir"]
    elsewhere = workdir / "another_project"
    elsewhere.mkdir()
    code = (
        "import sys, torch; from transformers import AutoModel;"
        f"m = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True);"
        "assert 'modeling_ter' not in sys.modules, 'the library was imported';"
        "o = m(text_embeds=torch.zeros(2, 384), audio_embeds=torch.zeros(2, 5, 384));"
        "import json; print(json.dumps([type(m).__module__, m.config.trusted_threshold, list(o.probs.shape),"
        " str(o.trusted.dtype)]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    module, threshold, shape, dtype = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert module.startswith("transformers_modules.")
    assert threshold == json.loads((out / "config.json").read_text())["trusted_threshold"]
    assert shape == [2, len(json.loads((out / "config.json").read_text())["id2label"])] and dtype == "torch.bool"

    output_json = workdir / "eval_subset.json"
    _run(
        [
            sys.executable,
            "scripts/evaluate.py",
            "--model",
            str(out),
            "--manifest",
            str(workdir / "subset.csv"),
            "--output_json",
            str(output_json),
            "--plots_dir",
            str(workdir / "eval_plots"),
            "--cache_dir",
            str(workdir / "cache"),
        ]
    )
    report = json.loads(output_json.read_text())
    assert set(report) == {"overall", "corpora"}
    assert set(report["corpora"]) == {"emodb", "meld", "crema_d"}
    assert set(report["corpora"]["emodb"]) == {"fused", "audio", "text"}
    assert set(report["corpora"]["meld"]) == {"fused", "text"}
    assert set(report["corpora"]["crema_d"]) == {"fused", "audio", "text", "video"}
    for heads in report["corpora"].values():
        for metrics in heads.values():
            assert set(metrics) == METRIC_KEYS
            assert metrics["threshold"] == report["overall"]["threshold"]
    assert report["overall"]["n"] == sum(heads["fused"]["n"] for heads in report["corpora"].values())
    with open(workdir / "subset.csv", newline="", encoding="utf-8") as f:
        assert report["overall"]["n"] == sum(1 for _ in csv.DictReader(f))
    assert len(list((workdir / "eval_plots").glob("*.png"))) == 3


def test_resume_from_epoch_state_equals_uninterrupted_run_and_reuses_the_cache(trained, subset, workdir):
    # A run killed during epoch 2: only its epoch-1 state exists. Resuming it must reproduce the uninterrupted run.
    resumed = workdir / "resumed"
    shutil.copytree(trained["dir"] / "checkpoints" / "epoch_1", resumed / "checkpoints" / "epoch_1")
    result = _run(
        [sys.executable, *_train_args(subset, workdir, resumed, subset["batch"]), "--resume_from_checkpoint", "latest"]
    )
    assert "1 epochs and" in result.stdout and "epoch 1: train loss" not in result.stdout
    assert "Cross-fitting the heads" in result.stdout  # recomputed identically: the same E*
    # The second run encodes nothing: every feature comes from the cache the first run filled.
    assert result.stdout.count(" 0 encoded now") == 1, result.stdout  # one split: every speaker is cross-fitted
    assert "encoded now" in trained["stdout"] and trained["stdout"].count(" 0 encoded now") == 0
    _assert_close(
        json.loads((resumed / "eval_results.json").read_text()),
        json.loads((trained["dir"] / "eval_results.json").read_text()),
        RESUME_TOLERANCE,
    )


def _gate_invariants(weights) -> tuple[torch.Tensor, torch.Tensor]:
    """`(W^T W, class means)` of the audio domain gate in an open safetensors file (whitening `W`)."""
    whitening = weights.get_tensor("domains.audio.whitening").double()
    return whitening.T @ whitening, weights.get_tensor("domains.audio.whitened_means").double() @ whitening


def test_two_process_ddp_matches_one_process(trained, subset, workdir):
    ddp = workdir / "ddp"
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        *_train_args(subset, workdir, ddp, subset["batch"] // 2),
    ]
    result = _run(launch, env={"ACCELERATE_USE_CPU": "true"})
    assert "2 process(es)" in result.stdout
    single = trained["dir"]
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == sorted(
        p.name for p in (single / "checkpoints").iterdir()
    )
    assert len(list(ddp.glob("config.json"))) == 1
    # The final heads: trained under DDP, they match the 1-process heads; the held-out report (cross-fitted heads,
    # the gate fitted through the final layer weights) too.
    with (
        safe_open(str(ddp / "model.safetensors"), framework="pt") as a,
        safe_open(str(single / "model.safetensors"), framework="pt") as b,
    ):
        heads = [key for key in a.keys() if not key.startswith("encoders.") and "whiten" not in key]
        assert heads and all(torch.allclose(a.get_tensor(k), b.get_tensor(k), atol=DDP_TOLERANCE) for k in heads)
        # The gate's whitening W is unique only up to a rotation within an eigenspace of equal eigenvalues (here the
        # shrunk covariance has one: fewer items than dimensions), so compare what its distance uses: the precision
        # W^T W and the class means through it.
        for ddp_value, single_value in zip(_gate_invariants(a), _gate_invariants(b)):
            scale = float(single_value.abs().max())
            torch.testing.assert_close(ddp_value, single_value, rtol=1e-3, atol=1e-3 * scale)
    _assert_close(
        json.loads((ddp / "eval_results.json").read_text()),
        json.loads((single / "eval_results.json").read_text()),
        DDP_TOLERANCE,
    )


def test_noise_augmentation_is_on_by_default_on_cached_features_only():
    # Noisy copies keep the confidence of noisy speech honest (README, robustness); fine-tuning encodes raw items
    # each step, which the cached copies cannot join, so there the default is none and asking for it fails.
    assert _arguments("--output_dir", "x").augmentations == ("noise",)
    assert _arguments("--output_dir", "x", "--finetune", "full").augmentations == ()
    assert _arguments("--output_dir", "x", "--augment", "none").augmentations == ()
    assert _arguments("--output_dir", "x", "--augment", "modality_dropout").augmentations == ("modality_dropout",)
    with pytest.raises(ValueError, match="use --finetune none"):
        _arguments("--output_dir", "x", "--augment", "noise", "--finetune", "lora")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_inputs_fail_before_any_work(tmp_path):
    from modeling_ter.training.loop import train

    def fails(expected: type, match: str, *argv: str) -> None:
        args = _arguments("--output_dir", str(tmp_path / "out"), *argv)
        with pytest.raises(expected, match=match):
            train(args)
        assert not (tmp_path / "out").exists() or (tmp_path / "out" / "keep").exists()

    fails(ValueError, r"--modalities 'audio,smell': unknown name\(s\) \['smell'\]", "--modalities", "audio,smell")
    header = "corpus,path,label,speaker_id,modality_files,transcript,language\n"
    fails(ValueError, "--manifest: .*no usable rows", "--manifest", str(_write(tmp_path / "empty.csv", header)))
    no_labels = _write(
        tmp_path / "nolabel.csv", "corpus,path,speaker_id,modality_files,transcript\nmeld,x#1,s,text,hi\n"
    )
    fails(ValueError, "--manifest: .*lacks the required column\\(s\\) label", "--manifest", str(no_labels))
    fails(FileNotFoundError, "--manifest: ", "--manifest", str(tmp_path / "missing.csv"))
    one_speaker = _write(
        tmp_path / "one.csv", header + "meld,x#1,anger,s1,text,Go away!,en\nmeld,x#2,fear,s1,text,Help!,en\n"
    )
    fails(ValueError, "has 1 speaker: .*at least two speakers", "--manifest", str(one_speaker))
    fails(FileNotFoundError, "holds no training state", "--resume_from_checkpoint", str(tmp_path))
    fails(FileNotFoundError, "latest: .* holds no epoch_N state", "--resume_from_checkpoint", "latest")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("a previous run")
    fails(ValueError, "already holds another run .*--overwrite_output_dir")
    assert (tmp_path / "out" / "keep").read_text() == "a previous run"


@pytest.fixture(scope="module")
def audio_text_model():
    from modeling_ter.encoders.defaults import build_default_model, build_default_processor

    return build_default_model(("audio", "text")), build_default_processor(("audio", "text"))


def test_feature_cache_encodes_each_item_once(audio_text_model, tmp_path):
    model, processor = audio_text_model
    calls = []
    embed = model.embed_modality

    def counting_embed(modality, **inputs):  # one entry per encoded item (items are encoded in batches)
        calls.extend([modality] * len(next(iter(inputs.values()))))
        return embed(modality, **inputs)

    model.embed_modality = counting_embed
    flacs = [Path(shutil.copy(f, tmp_path)) for f in sorted((DEMO_MANIFEST.parent / "emodb").rglob("*.flac"))[:2]]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + os.urandom(300))
    items = {"audio": [str(flacs[0]), str(flacs[1]), str(corrupt), None], "text": ["Hallo.", None, "Nein!", "Ja"]}
    first = compute_features(model, processor, items, ("audio", "text"), cache_dir=tmp_path / "cache")
    assert sorted(calls) == ["audio", "audio", "text", "text", "text"]
    assert (first.num_encoded, first.num_cached) == (6, 0)
    assert first.mask.tolist() == [[True, True], [True, False], [False, True], [False, True]]
    assert [(i, m) for i, m, _ in first.failures] == [(2, "audio")] and "corrupt.wav" in first.failures[0][2]
    assert first.features["audio"].shape == (4, 1, 384) and first.features["audio"][2:].abs().sum() == 0

    calls.clear()
    second = compute_features(model, processor, items, ("audio", "text"), cache_dir=tmp_path / "cache")
    assert calls == [] and (second.num_encoded, second.num_cached) == (0, 6)
    assert torch.equal(second.features["audio"], first.features["audio"]) and second.failures == first.failures

    os.utime(flacs[0])  # a touched file is a new item (mtime is in its key) ...
    with torch.no_grad():  # ... and changed weights are a new encoder (their hash is in its key)
        model.encoders["text"].backbone.embeddings.word_embeddings.weight[0, 0] += 1.0
    try:
        third = compute_features(model, processor, items, ("audio", "text"), cache_dir=tmp_path / "cache")
    finally:
        with torch.no_grad():
            model.encoders["text"].backbone.embeddings.word_embeddings.weight[0, 0] -= 1.0
        model.embed_modality = embed
    assert sorted(calls) == ["audio", "text", "text", "text"] and third.num_encoded == 4


def test_processes_that_plan_at_different_times_encode_every_item(audio_text_model, tmp_path):
    # Under `accelerate launch` one process may build its encoders faster and plan after the other has written part
    # of its share: the plan must not depend on the cache's state, or a share of a shorter plan misses items (it
    # did: 322 of 490 demo entries were written by 2 processes).
    model, processor = audio_text_model
    texts = [f"Satz Nummer {i}." for i in range(9)]
    cache_dir = tmp_path / "cache"
    key = encoder_key(model, "text", processor_settings(processor, "text"))
    cache = FeatureCache(cache_dir)
    fresh_plan = encoding_plan(cache, "text", key, texts, 2)
    assert encode_missing(model, processor, {"text": texts[2:6]}, ("text",), cache_dir, 2, 0, 1, False) == 4
    assert encoding_plan(cache, "text", key, texts, 2) == fresh_plan and len(fresh_plan) == 5
    # Process 1 of 2 alone: its batches (1, 3), then process 0's (4, 2, 0), skipping the 4 items cached above.
    assert encode_missing(model, processor, {"text": texts}, ("text",), cache_dir, 2, 1, 2, False) == 5
    assert all(cache.entry_path("text", key, item_key("text", t)).is_file() for t in texts)
    assert encode_missing(model, processor, {"text": texts}, ("text",), cache_dir, 2, 0, 2, False) == 0
    assert encoding_plan(cache, "text", key, texts, 2) == []


def test_a_batch_another_process_has_claimed_is_not_encoded_twice(audio_text_model, tmp_path):
    # Two processes that meet in the plan (one at the end of its share, the other stealing it last first) encoded
    # the same batch at once: one batch of each modality of the demo corpus, twice. A live claim is skipped; what a
    # dead process left claimed is encoded by the single-process pass after the wait, or taken over once stale.
    model, processor = audio_text_model
    texts = [f"Ein anderer Satz {i}." for i in range(6)]
    cache_dir = tmp_path / "cache"
    cache = FeatureCache(cache_dir)
    key = encoder_key(model, "text", processor_settings(processor, "text"))
    entries = {t: cache.entry_path("text", key, item_key("text", t)) for t in texts}
    plan = encoding_plan(cache, "text", key, texts, 2)
    claimed = [texts[i] for i in plan[1]]
    claim = batch_claim_path(cache, "text", key, [entries[t] for t in claimed])
    claim.parent.mkdir(parents=True)
    claim.touch()  # process 1 is encoding it
    assert encode_missing(model, processor, {"text": texts}, ("text",), cache_dir, 2, 0, 2, False) == 4
    assert [t for t in texts if not entries[t].is_file()] == claimed
    assert claim.is_file() and sorted(p.name for p in claim.parent.iterdir()) == [claim.name]  # its own are released
    # Its claimant died: alone, compute_features does not read claims and encodes what is missing.
    assert compute_features(model, processor, {"text": texts}, ("text",), cache_dir, False).num_encoded == 2
    for entry in entries.values():
        entry.unlink()
    os.utime(claim, (claim.stat().st_mtime - CLAIM_TIMEOUT_S - 1,) * 2)  # a stale claim is taken over
    assert encode_missing(model, processor, {"text": texts}, ("text",), cache_dir, 2, 1, 2, False) == 6
    assert all(entry.is_file() for entry in entries.values()) and not any(claim.parent.iterdir())
