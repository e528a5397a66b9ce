"""Push a TER checkpoint folder (and the `trusted_f1` metric as a Space) to the Hugging Face Hub.

Runs anywhere `huggingface_hub` can reach a Hub: huggingface.co (log in first, or set `HF_TOKEN`) or any endpoint
given by `HF_ENDPOINT` / `--endpoint` (the test suite uses a Hub on loopback; set `HF_HUB_DISABLE_XET=1` there).

    # a checkpoint: weights, config.json with auto_map, the remote-code .py files, processor files, README, plots
    python scripts/push_to_hub.py out/ter-emodb my-org/ter-emodb [--revision main] [--private] \
        [--commit_message "Add fold 3"]
    # the metric as a Space, so that `evaluate.load("my-org/trusted_f1")` works
    python scripts/push_to_hub.py --metric_space my-org/trusted_f1 [--metric_dir metrics/trusted_f1]
    # both in one call
    python scripts/push_to_hub.py out/ter-emodb my-org/ter-emodb --metric_space my-org/trusted_f1

What it guarantees:
- the folder is checked before any network call (config.json and safetensors weights present, every module named in
  config.json's `auto_map` present as a .py file; for a metric, `<space name>.py` present);
- re-pushing an unchanged folder uploads nothing: the local files' hashes (git blob sha1, or sha256 for LFS files)
  are compared with the remote's `paths-info` first, and no commit is made when all match;
- a failed upload changes nothing locally (uploading only reads files) and leaves no partial commit on the Hub
  (a commit is atomic); the script exits 1 with what failed (file, HTTP status) and how to retry.
Exit codes: 0 pushed or already up to date, 1 the Hub refused or could not be reached, 2 bad arguments or folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import filter_repo_objects
from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils.sha import git_hash, sha_fileobj

REPO_ROOT = Path(__file__).resolve().parents[1]
# Training-resume state that a model repo does not need (Trainer's intermediate checkpoints, optimizer, RNG).
CHECKPOINT_IGNORE = [
    "checkpoint-*",
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*",
    "training_args.bin",
    "*__pycache__*",
    "*.pyc",
]
METRIC_ALLOW = ["*.py", "README.md", "requirements.txt"]
METRIC_IGNORE = ["tests.py", "*/tests.py", "__init__.py", "*/__init__.py", "*__pycache__*", "*.pyc"]
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class PushError(Exception):
    """The Hub refused the push or could not be reached (exit code 1)."""


@dataclass(frozen=True)
class FolderSpec:
    """What to push from a folder, and as which kind of repo."""

    folder: Path
    repo_id: str
    repo_type: str = "model"
    allow_patterns: tuple[str, ...] | None = None
    ignore_patterns: tuple[str, ...] = ()
    space_sdk: str | None = None

    def files(self) -> list[str]:
        """The repo paths of the files to push, filtered exactly as `HfApi.upload_folder` filters them."""
        paths = sorted(p.relative_to(self.folder).as_posix() for p in self.folder.glob("**/*") if p.is_file())
        allow = list(self.allow_patterns) if self.allow_patterns is not None else None
        ignore = [*self.ignore_patterns, *DEFAULT_IGNORE_PATTERNS]
        return list(filter_repo_objects(paths, allow_patterns=allow, ignore_patterns=ignore))


def checkpoint_spec(folder: str | Path, repo_id: str) -> FolderSpec:
    """Check a checkpoint folder before any upload; raise `FileNotFoundError` naming what is missing."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"The checkpoint folder {folder} does not exist: pass the save_pretrained folder.")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: save the model with save_pretrained(folder) first.")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(
            f"{folder} has no safetensors weights ({' or '.join(WEIGHT_FILES)}): save with "
            "save_pretrained(folder, safe_serialization=True)."
        )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for auto_class, reference in config.get("auto_map", {}).items():
        references = reference if isinstance(reference, list) else [reference]
        for ref in references:
            if not ref or "--" in ref:  # "other/repo--module.Class": the code lives in another repo
                continue
            module = ref.rsplit(".", 1)[0]
            if not (folder / f"{module}.py").is_file():
                raise FileNotFoundError(
                    f"config.json's auto_map[{auto_class!r}] = {ref!r} needs {module}.py in {folder}, which is "
                    "missing: register the classes with register_for_auto_class() before save_pretrained."
                )
    return FolderSpec(folder, repo_id, "model", None, tuple(CHECKPOINT_IGNORE))


def metric_spec(folder: str | Path, space_id: str) -> FolderSpec:
    """Check an `evaluate` metric folder: `evaluate.load("ns/name")` fetches `name.py`, so it must exist."""
    folder = Path(folder).expanduser().resolve()
    name = space_id.split("/")[-1]
    if not (folder / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"The metric folder {folder} has no {name}.py: evaluate.load({space_id!r}) downloads '<space name>.py', "
            "so the Space name must match the metric module's file name."
        )
    return FolderSpec(folder, space_id, "space", tuple(METRIC_ALLOW), tuple(METRIC_IGNORE), space_sdk="gradio")


def _is_unchanged(local: Path, remote) -> bool:
    """Whether a local file has the content of a remote `RepoFile` (sha256 for LFS files, else git blob sha1)."""
    if remote is None or not hasattr(remote, "blob_id") or remote.size != local.stat().st_size:
        return False
    if remote.lfs is not None:
        with local.open("rb") as file:
            return sha_fileobj(file).hex() == remote.lfs.sha256
    return git_hash(local.read_bytes()) == remote.blob_id


def changed_files(api: HfApi, spec: FolderSpec, revision: str) -> list[str]:
    """The files of `spec` whose content differs from (or is missing at) `revision` of the remote repo."""
    paths = spec.files()
    remote = {f.path: f for f in api.get_paths_info(spec.repo_id, paths, revision=revision, repo_type=spec.repo_type)}
    return [p for p in paths if not _is_unchanged(spec.folder / p, remote.get(p))]


def _describe_failure(error: BaseException, endpoint: str) -> str:
    """One line on what failed: the file (for LFS uploads), the HTTP status and URL, or the network error."""
    parts, seen = [], error
    while seen is not None:
        if isinstance(seen, HfHubHTTPError) and seen.response is not None:
            request = seen.response.request
            parts.append(f"HTTP {seen.response.status_code} from {request.method} {request.url}")
        elif isinstance(seen, httpx2.ConnectError):
            parts.append(f"the Hub at {endpoint} is unreachable ({seen})")
        elif isinstance(seen, httpx2.TransportError):
            parts.append(f"the connection to the Hub failed ({type(seen).__name__}: {seen})")
        elif isinstance(seen, RuntimeError) and "Error while uploading" in str(seen):
            parts.append(str(seen).rstrip("."))
        seen = seen.__cause__ or seen.__context__
    return "; ".join(parts) or f"{type(error).__name__}: {error}"


def push_folder(
    api: HfApi,
    spec: FolderSpec,
    revision: str = "main",
    private: bool = False,
    commit_message: str | None = None,
    create: bool = True,
) -> CommitInfo | None:
    """Push the files of `spec` to `revision`; return the commit, or `None` when the remote already has them all.

    Raises:
        PushError: the repo or revision is missing, the Hub is unreachable, or an upload / the commit failed.
    """
    where = f"{spec.repo_type} {spec.repo_id}@{revision}"
    try:
        try:
            head = api.repo_info(spec.repo_id, repo_type=spec.repo_type, revision=revision).sha
        except RevisionNotFoundError as err:
            raise PushError(
                f"The revision {revision!r} does not exist in {spec.repo_type} {spec.repo_id}: create the branch "
                f"first (HfApi.create_branch) or push to an existing one."
            ) from err
        except RepositoryNotFoundError as err:
            if not create:
                raise PushError(
                    f"The {spec.repo_type} repo {spec.repo_id} does not exist (or your token cannot see it): "
                    "create it, or drop --no_create to let this script create it."
                ) from err
            if revision != "main":
                raise PushError(f"{spec.repo_id} does not exist, so it has no branch {revision!r}.") from err
            api.create_repo(spec.repo_id, repo_type=spec.repo_type, private=private, space_sdk=spec.space_sdk)
            head = None
        changed = changed_files(api, spec, revision)
        if not changed:
            print(f"Nothing to push: {where} already has these {len(spec.files())} files (commit {head}).")
            return None
        print(f"Pushing {len(changed)} changed file(s) to {where}: {', '.join(changed)}")
        commit = api.upload_folder(
            repo_id=spec.repo_id,
            folder_path=spec.folder,
            repo_type=spec.repo_type,
            revision=revision,
            commit_message=commit_message or f"Upload {spec.folder.name} with scripts/push_to_hub.py",
            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns is not None else None,
            ignore_patterns=list(spec.ignore_patterns),
        )
    except PushError:
        raise
    except (HfHubHTTPError, httpx2.TransportError, RuntimeError) as err:
        raise PushError(
            f"Pushing {spec.folder} to {where} failed: {_describe_failure(err, api.endpoint)}. Nothing was changed "
            f"locally ({spec.folder} is untouched) and the Hub keeps no partial commit: re-run the command to retry."
        ) from err
    print(f"Pushed to {where}: commit {commit.oid}")
    return commit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint_dir", nargs="?", help="folder written by save_pretrained (and the card builder)")
    parser.add_argument("repo_id", nargs="?", help="model repo, e.g. my-org/ter-emodb")
    parser.add_argument("--revision", default="main", help="model branch to push to (must exist unless it is main)")
    parser.add_argument("--private", action="store_true", help="create the repo private (only when it is created)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--no_create", action="store_true", help="fail if the repo does not exist")
    parser.add_argument("--metric_space", default=None, help="push the metric as this Space, e.g. my-org/trusted_f1")
    parser.add_argument("--metric_dir", default=str(REPO_ROOT / "metrics" / "trusted_f1"))
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    args = parser.parse_args(argv)
    if (args.checkpoint_dir is None) != (args.repo_id is None):
        parser.error("give both CHECKPOINT_DIR and REPO_ID, or neither (with --metric_space)")
    if args.checkpoint_dir is None and args.metric_space is None:
        parser.error("nothing to push: give CHECKPOINT_DIR REPO_ID and/or --metric_space NAMESPACE/NAME")
    for repo_id in filter(None, (args.repo_id, args.metric_space)):
        if repo_id.count("/") != 1:
            parser.error(f"repo ids are NAMESPACE/NAME, got {repo_id!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = []
        if args.checkpoint_dir is not None:
            specs.append(checkpoint_spec(args.checkpoint_dir, args.repo_id))
        if args.metric_space is not None:
            specs.append(metric_spec(args.metric_dir, args.metric_space))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    api = HfApi(endpoint=args.endpoint)
    try:
        for spec in specs:
            revision = args.revision if spec.repo_type == "model" else "main"  # a Space serves its main branch
            push_folder(api, spec, revision, args.private, args.commit_message, create=not args.no_create)
    except PushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
