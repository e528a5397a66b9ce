"""Push and pull over real HTTP, against the loopback Hub of tests/hub_server.py."""

import hashlib
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

REPO_ROOT = Path(__file__).resolve().parents[1]
PUSH_SCRIPT = REPO_ROOT / "scripts" / "push_to_hub.py"
INPUT_IDS = [[2, 7, 11, 5, 0], [3, 1, 4, 1, 5]]


def _tiny_bert(folder: Path) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=16)
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
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _push(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(PUSH_SCRIPT), *args], env, cwd)


def test_upload_then_from_pretrained_in_a_fresh_process(hub_server, hub_api, hub_env, tmp_path):
    model = _checkpoint(tmp_path / "ckpt")
    hub_api.create_repo("org/tiny-bert")
    commit = hub_api.upload_folder(repo_id="org/tiny-bert", folder_path=tmp_path / "ckpt")
    assert hub_server.head("model", "org/tiny-bert").sha == commit.oid
    tree = {f.path: f for f in hub_api.list_repo_tree("org/tiny-bert", recursive=True)}
    assert tree["model.safetensors"].lfs is not None and tree["plots/reliability.png"].lfs is not None
    assert tree["config.json"].lfs is None

    code = textwrap.dedent(f"""
        import json, sys, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained("org/tiny-bert").eval()
        with torch.no_grad():
            out = model(torch.tensor({INPUT_IDS})).last_hidden_state
        model.push_to_hub("org/tiny-bert-pushed")
        json.dump(out.tolist(), sys.stdout)
    """)
    result = _run([sys.executable, "-c", code], hub_env, tmp_path)
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = model(torch.tensor(INPUT_IDS)).last_hidden_state
    assert torch.equal(torch.tensor(json.loads(result.stdout)), expected)

    # push_to_hub from that process made a repo whose weights are the ones we uploaded
    pushed = hf_hub_download("org/tiny-bert-pushed", "model.safetensors", endpoint=hub_server.endpoint,
                             cache_dir=tmp_path / "cache")
    reference = model.state_dict()
    assert all(torch.equal(tensor, reference[name]) for name, tensor in load_file(pushed).items())

    snapshot = Path(snapshot_download("org/tiny-bert", endpoint=hub_server.endpoint, cache_dir=tmp_path / "cache"))
    local = _folder_digest(tmp_path / "ckpt")
    assert {k: v for k, v in _folder_digest(snapshot).items() if k != ".gitattributes"} == local


def test_download_by_revision_and_range(hub_server, hub_api, tmp_path):
    hub_api.create_repo("org/revisions")
    first = hub_api.upload_file(path_or_fileobj=b"version one", path_in_repo="notes.txt", repo_id="org/revisions")
    second = hub_api.upload_file(path_or_fileobj=b"version two!", path_in_repo="notes.txt", repo_id="org/revisions")
    assert first.oid != second.oid
    kwargs = dict(endpoint=hub_server.endpoint, cache_dir=tmp_path / "cache")
    for revision, content in [(first.oid, b"version one"), (first.oid[:7], b"version one"),
                              (second.oid, b"version two!"), ("main", b"version two!")]:
        path = hf_hub_download("org/revisions", "notes.txt", revision=revision, **kwargs)
        assert Path(path).read_bytes() == content, revision

    response = get_session().get(f"{hub_server.endpoint}/org/revisions/resolve/{first.oid}/notes.txt",
                                 headers={"Range": "bytes=8-"})
    assert (response.status_code, response.content) == (206, b"one")
    assert response.headers["X-Repo-Commit"] == first.oid
    assert response.headers["Content-Range"] == "bytes 8-10/11"


def test_missing_repo_revision_entry_raise_hub_errors(hub_server, hub_api, tmp_path):
    hub_api.create_repo("org/errors")
    kwargs = dict(endpoint=hub_server.endpoint, cache_dir=tmp_path / "cache")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/does-not-exist", "config.json", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/errors", ".gitattributes", revision="no-such-branch", **kwargs)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/errors", "config.json", **kwargs)
    with pytest.raises(RepositoryNotFoundError):
        hub_api.model_info("org/does-not-exist")
    with pytest.raises(HfHubHTTPError) as conflict:
        hub_api.create_repo("org/errors")
    assert conflict.value.response.status_code == 409
    anonymous = get_session().post(f"{hub_server.endpoint}/api/repos/create", json={"name": "x", "organization": "org"})
    assert anonymous.status_code == 401
    private = hub_api.create_repo("org/private", private=True)
    assert private.repo_id == "org/private"
    assert get_session().get(f"{hub_server.endpoint}/api/models/org/private").headers["X-Error-Code"] == "RepoNotFound"
    assert hub_api.model_info("org/private").private is True


def test_space_create_upload_delete(hub_server, hub_api):
    hub_api.create_repo("org/a-space", repo_type="space", space_sdk="gradio")
    hub_api.upload_file(path_or_fileobj=b"print('hi')\n", path_in_repo="app.py", repo_id="org/a-space",
                        repo_type="space")
    info = hub_api.space_info("org/a-space")
    assert info.sdk == "gradio"
    assert sorted(s.rfilename for s in info.siblings) == [".gitattributes", "app.py"]
    hub_api.delete_repo("org/a-space", repo_type="space")
    with pytest.raises(RepositoryNotFoundError):
        hub_api.space_info("org/a-space")


def test_push_script_twice_uploads_nothing_the_second_time(hub_server, hub_env, tmp_path):
    _checkpoint(tmp_path / "ckpt")
    first = _push([str(tmp_path / "ckpt"), "org/pushed", "--commit_message", "first"], hub_env, tmp_path)
    assert first.returncode == 0, first.stderr
    head = hub_server.head("model", "org/pushed")
    assert head.title == "first"
    assert set(head.files) == {".gitattributes", "config.json", "model.safetensors", "README.md",
                               "eval_results.json", "plots/reliability.png"}
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
    unreachable = _push([str(tmp_path / "ckpt"), "org/x", "--endpoint", f"http://127.0.0.1:{closed_port}"],
                        hub_env, tmp_path)
    assert unreachable.returncode == 1 and f"127.0.0.1:{closed_port} is unreachable" in unreachable.stderr

    (tmp_path / "ckpt" / "model.safetensors").unlink()
    log_start = len(hub_server.log)
    invalid = _push([str(tmp_path / "ckpt"), "org/x"], hub_env, tmp_path)
    assert invalid.returncode == 2 and "no safetensors weights" in invalid.stderr
    assert hub_server.log[log_start:] == []  # checked before any request
