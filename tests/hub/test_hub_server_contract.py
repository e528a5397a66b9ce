"""The contract of the loopback Hub double (tests/hub_server.py) with the pinned huggingface_hub client.

This guards the double's fidelity, not our code: when huggingface_hub changes how it talks to the Hub (endpoints,
headers, LFS, error codes), this test fails first, before the push / pull tests of our own code give confusing
results. One pass over what those tests rely on: a commit with regular and LFS files, downloads by revision and with
a byte range, and the typed errors for a missing repo, revision or file.
"""

from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import get_session


def test_commit_download_range_and_errors_follow_the_hub_protocol(hub_server, hub_api, tmp_path):
    folder = tmp_path / "repo"
    (folder / "plots").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "plots" / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\n\0" + bytes(range(256)))  # binary: LFS
    hub_api.create_repo("org/contract")
    first = hub_api.upload_folder(repo_id="org/contract", folder_path=folder)
    second = hub_api.upload_file(path_or_fileobj=b"version two!", path_in_repo="config.json", repo_id="org/contract")
    assert hub_server.head("model", "org/contract").sha == second.oid != first.oid
    tree = {f.path: f for f in hub_api.list_repo_tree("org/contract", recursive=True)}
    assert tree["plots/curve.png"].lfs is not None and tree["config.json"].lfs is None

    kwargs = dict(endpoint=hub_server.endpoint, cache_dir=tmp_path / "cache")
    for revision, content in [(first.oid[:7], b'{"model_type": "bert"}'), ("main", b"version two!")]:
        assert Path(hf_hub_download("org/contract", "config.json", revision=revision, **kwargs)).read_bytes() == content
    png = Path(hf_hub_download("org/contract", "plots/curve.png", **kwargs)).read_bytes()
    assert png == (folder / "plots" / "curve.png").read_bytes()
    response = get_session().get(
        f"{hub_server.endpoint}/org/contract/resolve/main/config.json", headers={"Range": "bytes=8-"}
    )
    assert (response.status_code, response.content, response.headers["X-Repo-Commit"]) == (206, b"two!", second.oid)

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/does-not-exist", "config.json", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/contract", "config.json", revision="no-such-branch", **kwargs)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/contract", "missing.json", **kwargs)
