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
from transformers import BertConfig, WhisperConfig

from modeling_ter import TERConfig, TERForEmotionRecognition
from trusted_f1.trusted_metrics import trusted_scores

REPO_ROOT = Path(__file__).resolve().parents[2]
PUSH_SCRIPT = REPO_ROOT / "scripts" / "push_to_hub.py"


def tiny_ter_with_every_backbone() -> TERForEmotionRecognition:
    """Random tiny Whisper (audio), BERT (text) and our face CNN (video): every raw-input path of the remote code."""
    torch.manual_seed(0)
    whisper = WhisperConfig(
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=24,
        decoder_ffn_dim=24,
        num_mel_bins=80,
        max_source_positions=50,
        vocab_size=60,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    bert = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24)
    face = {"model_type": "ter_face_cnn", "block_channels": [8, 16], "hidden_size": 16}
    config = TERConfig(
        modality_configs={
            "audio": {"backbone": whisper.to_dict(), "use_weighted_layer_sum": True},
            "text": {"backbone": bert.to_dict()},
            "video": {"backbone": face},
        },
        id2label={0: "anger", 1: "happiness", 2: "sadness"},
        head_hidden_size=8,
        trusted_threshold=0.01,
    )
    return TERForEmotionRecognition(config).eval()


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
        env=hub_env,
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
