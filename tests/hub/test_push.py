"""scripts/push_to_hub.py (modeling_ter.hub.push) over real HTTP, against the loopback Hub of tests/hub_server.py."""

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_bert_config
from transformers import BertModel

REPO_ROOT = Path(__file__).resolve().parents[2]
PUSH_SCRIPT = REPO_ROOT / "scripts" / "push_to_hub.py"
# What the Hub holds after a push of `_checkpoint`'s folder.
PUSHED_FILES = {
    ".gitattributes",
    "config.json",
    "model.safetensors",
    "README.md",
    "eval_results.json",
    "plots/reliability.png",
}


def _tiny_bert(folder: Path) -> BertModel:
    torch.manual_seed(0)
    config = tiny_bert_config(vocab_size=32, hidden_size=32, intermediate_size=37, max_position_embeddings=16)
    model = BertModel(config).eval()
    model.save_pretrained(folder)
    return model


def _checkpoint(folder: Path) -> BertModel:
    """A checkpoint folder as the push script expects it: weights, config, card, eval JSON, a plot (binary)."""
    model = _tiny_bert(folder)
    (folder / "README.md").write_text("---\nlibrary_name: transformers\n---\n# tiny\n")
    (folder / "eval_results.json").write_text(json.dumps({"overall": {"accuracy": 0.5}}))
    (folder / "plots").mkdir()
    (folder / "plots" / "reliability.png").write_bytes(b"\x89PNG\r\n\x1a\n\0" + bytes(range(256)))
    return model


def _folder_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _push(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(PUSH_SCRIPT), *args], env, cwd)


def test_push_sends_the_allow_list_only(hub_server, hub_env, tmp_path):
    """Training states, pickles, stray evaluation files and hidden files never leave the machine."""
    _checkpoint(tmp_path / "ckpt")
    state = tmp_path / "ckpt" / "checkpoints" / "epoch_3"
    state.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl"):
        (state / name).write_bytes(b"state")
    (tmp_path / "ckpt" / "eval.json").write_text("{}")
    (tmp_path / "ckpt" / "notes.pkl").write_bytes(b"pickle")
    (tmp_path / "ckpt" / ".final.incomplete-1").mkdir()
    (tmp_path / "ckpt" / "modeling_ter.py").write_text("# remote code\n")
    result = _push([str(tmp_path / "ckpt"), "org/allow-list"], hub_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(hub_server.head("model", "org/allow-list").files) == {*PUSHED_FILES, "modeling_ter.py"}


def test_push_script_twice_uploads_nothing_the_second_time(hub_server, hub_env, tmp_path):
    _checkpoint(tmp_path / "ckpt")
    first = _push([str(tmp_path / "ckpt"), "org/pushed", "--commit_message", "first"], hub_env, tmp_path)
    assert first.returncode == 0, first.stderr
    head = hub_server.head("model", "org/pushed")
    assert head.title == "first"
    assert set(head.files) == PUSHED_FILES
    assert hub_server.count("lfs_upload") >= 2

    log_start = len(hub_server.log)
    second = _push([str(tmp_path / "ckpt"), "org/pushed"], hub_env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Nothing to push" in second.stdout
    kinds = [kind for _, kind, _ in hub_server.log[log_start:]]
    assert kinds == ["info", "paths_info"]  # no preupload, no LFS batch or PUT, no commit
    assert hub_server.head("model", "org/pushed").sha == head.sha

    (tmp_path / "ckpt" / "eval_results.json").write_text(json.dumps({"overall": {"accuracy": 0.75}}))
    third = _push([str(tmp_path / "ckpt"), "org/pushed"], hub_env, tmp_path)
    assert third.returncode == 0, third.stderr
    assert "Pushing 1 changed file(s)" in third.stdout and "eval_results.json" in third.stdout
    new_head = hub_server.head("model", "org/pushed")
    assert new_head.parent == head.sha
    assert {p for p in new_head.files if new_head.files[p] != head.files.get(p)} == {"eval_results.json"}


@pytest.mark.parametrize(
    "failure, expected",
    [
        (dict(kind="lfs_upload", status=507, times=10), ["HTTP 507", "Error while uploading '"]),
        (dict(kind="commit", drop=True), ["connection to the Hub failed", "RemoteProtocolError"]),
    ],
    ids=["lfs-upload-507", "commit-connection-dropped"],
)
def test_push_script_failure_leaves_everything_intact(hub_server, hub_env, tmp_path, failure, expected):
    _checkpoint(tmp_path / "ckpt")
    repo = f"org/fail-{failure['kind']}"
    before = _folder_digest(tmp_path / "ckpt")
    hub_server.fail_next(**failure)
    try:
        result = _push([str(tmp_path / "ckpt"), repo], hub_env, tmp_path)
    finally:
        hub_server.clear_failures()
    assert result.returncode == 1
    for text in expected + ["Nothing was changed locally", "re-run"]:
        assert text in result.stderr, (text, result.stderr)
    assert _folder_digest(tmp_path / "ckpt") == before
    assert list(hub_server.head("model", repo).files) == [".gitattributes"]  # no partial commit


def test_push_script_clear_errors(hub_server, hub_env, tmp_path):
    _checkpoint(tmp_path / "ckpt")
    missing = _push([str(tmp_path / "ckpt"), "org/never-created", "--no_create"], hub_env, tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    hub_server.create_repo("model", "org/has-main")
    branch = _push([str(tmp_path / "ckpt"), "org/has-main", "--revision", "v2"], hub_env, tmp_path)
    assert branch.returncode == 1 and "revision 'v2' does not exist" in branch.stderr

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable = _push(
        [str(tmp_path / "ckpt"), "org/x", "--endpoint", f"http://127.0.0.1:{closed_port}"], hub_env, tmp_path
    )
    assert unreachable.returncode == 1 and f"127.0.0.1:{closed_port} is unreachable" in unreachable.stderr

    (tmp_path / "ckpt" / "model.safetensors").unlink()
    log_start = len(hub_server.log)
    invalid = _push([str(tmp_path / "ckpt"), "org/x"], hub_env, tmp_path)
    assert invalid.returncode == 2 and "no safetensors weights" in invalid.stderr
    assert hub_server.log[log_start:] == []  # checked before any request


def test_demo_space_push_loads_the_model_by_id_and_sends_the_allow_list_only(hub_server, hub_env, tmp_path):
    result = _push(["--demo_space", "org/ter-demo", "--model", "org/ter-emodb"], hub_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert hub_server.repos[("space", "org/ter-demo")].sdk == "gradio"
    files = set(hub_server.head("space", "org/ter-demo").files)  # what the server holds, not what was sent
    assert {"app.py", "README.md", "requirements.txt", "modeling_ter/__init__.py"} <= files
    assert "modeling_ter/models/modeling_ter.py" in files and "trusted_f1/trusted_metrics.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".pkl", ".bin"))]
    head = hub_server.head("space", "org/ter-demo")
    assert "org/ter-emodb" in hub_server.read_file(head.files["app.py"]).decode()
    assert "sdk: gradio" in hub_server.read_file(head.files["README.md"]).decode()
    refused = _push(["--demo_space", "org/ter-demo"], hub_env, tmp_path)
    assert refused.returncode == 2 and "--demo_space needs --model" in refused.stderr
