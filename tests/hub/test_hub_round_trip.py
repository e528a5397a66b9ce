"""A TER checkpoint and the trusted_f1 metric pushed to the loopback Hub, then used from a fresh virtual environment
that has transformers and evaluate but not our package (as a user's other project would)."""

import json
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from tiny_models import tiny_ter_with_every_backbone

from modeling_ter.encoders.defaults import build_default_processor
from modeling_ter.processing.audio import load_audio
from trusted_f1.trusted_metrics import trusted_scores

REPO_ROOT = Path(__file__).resolve().parents[2]
EMODB_CLIP = REPO_ROOT / "data" / "emodb" / "wav" / "03a01Wa.flac"
CREMA_VIDEO = REPO_ROOT / "data" / "crema_d" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
PUSH_SCRIPT = REPO_ROOT / "scripts" / "push_to_hub.py"


def fixed_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "audio_input_features": torch.randn(2, 80, 60, generator=generator),
        "audio_attention_mask": torch.tensor([[1] * 60, [1] * 40 + [0] * 20]),
        "text_input_ids": torch.randint(1, 40, (2, 6), generator=generator),
        "text_attention_mask": torch.ones(2, 6, dtype=torch.long),
        "video_pixel_values": torch.randn(2, 3, 1, 64, 64, generator=generator),
        "video_frame_mask": torch.tensor([[True, True, False], [True, True, True]]),
        "modality_mask": torch.tensor([[True, True, True], [True, False, True]]),
    }


def fresh_environment(folder: Path) -> Path:
    """A new venv that reaches the installed dependencies but not our package.

    Its `.pth` file lists the interpreter's site-packages folders; `.pth` files *inside* those folders (our editable
    install's among them) are only processed for real site dirs, so `modeling_ter` and `trusted_f1` stay unreachable.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    (site_packages,) = folder.glob("lib/python*/site-packages")
    (site_packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return folder / "bin" / "python"


CLIENT = textwrap.dedent(
    """
    import importlib.util, json, sys
    for package in ("modeling_ter", "trusted_f1"):
        assert importlib.util.find_spec(package) is None, package + " is importable in the fresh environment"
    import evaluate, torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained("org/ter-tiny", trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    out = model(**torch.load(sys.argv[1]))
    torch.save({f: getattr(out, f) for f in ("alpha", "confidence", "trusted", "conflict")}, sys.argv[2])
    metric = evaluate.load("org/trusted_f1")
    data = json.load(open(sys.argv[3]))
    print(json.dumps(metric.compute(**data, threshold="break_even")))
    """
)


def test_push_then_load_model_and_metric_in_a_fresh_environment(hub_server, hub_env, tmp_path):
    model = tiny_ter_with_every_backbone()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    (checkpoint / "README.md").write_text("---\nlibrary_name: transformers\n---\n# tiny TER\n")
    # The real metric folder, with a bytecode cache in it: tests, __init__ and caches must stay out of the Space.
    metric_dir = tmp_path / "space" / "trusted_f1"  # not beside the client, whose cwd is on its sys.path
    shutil.copytree(REPO_ROOT / "metrics" / "trusted_f1", metric_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (metric_dir / "__pycache__").mkdir()
    (metric_dir / "__pycache__" / "trusted_f1.cpython-311.pyc").write_bytes(b"\0")

    def push(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(PUSH_SCRIPT), *arguments],
            env=hub_env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    for pushed in (
        push(str(checkpoint), "org/ter-tiny"),
        push("--metric_space", "org/trusted_f1", "--metric_dir", str(metric_dir)),
    ):
        assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert hub_server.repos[("space", "org/trusted_f1")].sdk == "gradio"
    assert set(hub_server.head("space", "org/trusted_f1").files) == {
        ".gitattributes",
        "trusted_f1.py",
        "trusted_metrics.py",
        "README.md",
        "app.py",
        "requirements.txt",
    }
    renamed = push("--metric_space", "org/other_name", "--metric_dir", str(metric_dir))
    assert renamed.returncode == 2 and "no other_name.py" in renamed.stderr

    inputs = fixed_inputs()
    torch.save(inputs, tmp_path / "inputs.pt")
    rng = np.random.default_rng(0)
    scores = {
        "predictions": rng.integers(0, 3, 200).tolist(),
        "references": rng.integers(0, 3, 200).tolist(),
        "confidences": rng.random(200).round(3).tolist(),
    }
    (tmp_path / "scores.json").write_text(json.dumps(scores))

    python = fresh_environment(tmp_path / "venv")
    client = subprocess.run(
        [str(python), "-c", CLIENT, *(str(tmp_path / name) for name in ("inputs.pt", "out.pt", "scores.json"))],
        env={k: v for k, v in hub_env.items() if k != "PYTHONPATH"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert client.returncode == 0, client.stderr[-4000:]

    remote = torch.load(tmp_path / "out.pt")
    expected = model(**inputs)
    for field in ("alpha", "confidence", "trusted", "conflict"):
        assert torch.equal(remote[field], getattr(expected, field)), field
    remote_metric = json.loads(client.stdout.strip().splitlines()[-1])
    local_metric = trusted_scores(
        scores["predictions"], scores["references"], scores["confidences"], threshold="break_even"
    )
    assert remote_metric.keys() == local_metric.keys()
    for key, value in local_metric.items():
        assert np.isclose(remote_metric[key], value, rtol=1e-12, equal_nan=True), key


# The checkpoint user's project: no modeling_ter, and (to show that arrays and text need only transformers' own
# dependencies) soundfile, scipy, PyAV and OpenCV made unimportable.
CHAIN_CLIENT = textwrap.dedent(
    """
    import importlib.util, json, sys
    for blocked in ("soundfile", "scipy", "av", "cv2"):
        sys.modules[blocked] = None  # import raises ImportError; find_spec says not installed
    assert importlib.util.find_spec("modeling_ter") is None
    import numpy as np
    from huggingface_hub import snapshot_download
    from transformers import AutoProcessor, pipeline
    waveform, text, video = np.load(sys.argv[1]), sys.argv[2], sys.argv[3]
    folder = snapshot_download("org/ter-chain")
    out = {}
    for where, source in (("hub", "org/ter-chain"), ("folder", folder)):
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=True)
        out[where + "_processor"] = [type(processor).__name__, type(processor).__module__]
        by_task = pipeline("trusted-emotion-recognition", model=source, trust_remote_code=True)
        by_model = pipeline(model=source, trust_remote_code=True)
        out[where + "_task"] = by_task({"audio": waveform, "sampling_rate": 16000, "text": text})
        out[where + "_model"] = by_model(waveform, sampling_rate=16000)
    try:
        by_task({"video": video})
    except ImportError as error:
        out["video_error"] = str(error)
    print(json.dumps(out))
    """
)


def _no_local_path(value) -> bool:
    if isinstance(value, dict):
        return all(_no_local_path(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_local_path(v) for v in value)
    return not (isinstance(value, str) and (value.startswith(("/", "~", "./")) or ":\\" in value))


def test_processor_and_pipeline_load_from_the_hub_and_a_folder_without_the_package(hub_server, hub_env, tmp_path):
    """A main-job-shaped checkpoint (model, processor, card, evaluation, plots, training states) pushed to the Hub:
    only the allow-list goes up, with no local path in config.json, and a project without this package gets the
    TER processor and the pipeline (by task and by model) from the Hub and from a folder, with the same results."""
    processor = build_default_processor()
    model = tiny_ter_with_every_backbone(text_vocab_size=processor.tokenizer.vocab_size)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    (checkpoint / "README.md").write_text("---\nlibrary_name: transformers\n---\n# tiny TER\n")
    (checkpoint / "eval_results.json").write_text(json.dumps({"overall": {"accuracy": 0.5}}))
    (checkpoint / "plots").mkdir()
    (checkpoint / "plots" / "reliability.png").write_bytes(b"\x89PNG\r\n\x1a\n\0")
    (checkpoint / "training_data.json").write_text(json.dumps({"manifest": "manifest.csv", "corpora": {}}))
    (checkpoint / "eval.json").write_text("{}")
    state = checkpoint / "checkpoints" / "epoch_1"
    state.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.bin", "random_states_0.pkl", "scheduler.bin"):
        (state / name).write_bytes(b"state")
    pushed = subprocess.run(
        [sys.executable, str(PUSH_SCRIPT), str(checkpoint), "org/ter-chain"],
        env=hub_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pushed.returncode == 0, pushed.stderr[-3000:]

    # Server side: what the Hub holds.
    head = hub_server.head("model", "org/ter-chain")
    assert not [p for p in head.files if p.startswith("checkpoints/") or p.endswith((".pkl", ".bin"))], head.files
    assert "eval.json" not in head.files
    assert {
        "processor_config.json",
        "trusted_emotion_recognition.py",
        "processing_ter.py",
        "audio.py",
        "video.py",
        "training_data.json",
        "eval_results.json",
        "plots/reliability.png",
    } <= set(head.files)
    config = json.loads(hub_server.read_file(head.files["config.json"]))
    assert _no_local_path(config), config
    assert config["modality_configs"]["audio"]["backbone"]["_name_or_path"] == "tiny-whisper"  # was a local folder
    assert "trusted-emotion-recognition" in config["custom_pipelines"]

    # The same inputs through the pipeline with the package installed (no trust_remote_code needed).
    from transformers import pipeline

    waveform = load_audio(EMODB_CLIP)
    text = "Der Lappen liegt auf dem Eisschrank."
    local = pipeline("trusted-emotion-recognition", model=str(checkpoint))
    expected_task = local({"audio": waveform, "sampling_rate": 16000, "text": text})
    expected_model = local(waveform, sampling_rate=16000)
    np.save(tmp_path / "waveform.npy", waveform)

    python = fresh_environment(tmp_path / "venv")
    client = subprocess.run(
        [str(python), "-c", CHAIN_CLIENT, str(tmp_path / "waveform.npy"), text, str(CREMA_VIDEO)],
        env={k: v for k, v in hub_env.items() if k != "PYTHONPATH"},  # a source checkout on it would be found
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert client.returncode == 0, client.stderr[-4000:]
    remote = json.loads(client.stdout.strip().splitlines()[-1])
    for where in ("hub", "folder"):
        name, module = remote[where + "_processor"]
        assert name == "TERProcessor" and module.startswith("transformers_modules"), (name, module)
        for kind, expected in (("task", expected_task), ("model", expected_model)):
            got = remote[f"{where}_{kind}"]
            assert got["label"] == expected["label"], (where, kind)
            assert abs(got["confidence"] - expected["confidence"]) <= 1e-6, (where, kind)
            assert got["modalities"].keys() == expected["modalities"].keys()
            assert [m["present"] for m in got["modalities"].values()] == [
                m["present"] for m in expected["modalities"].values()
            ]
    assert expected_task["modalities"]["text"]["present"] and not expected_model["modalities"]["text"]["present"]
    assert "pip install av" in remote["video_error"], remote["video_error"]
