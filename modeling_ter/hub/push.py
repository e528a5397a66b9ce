"""Pushes of a TER checkpoint folder (and of the `trusted_f1` metric as a Space) to the Hugging Face Hub.

- The folder is checked before any network call (config.json and safetensors weights present, every module named in
  config.json's `auto_map` present as a .py file; for a metric, `<space name>.py` present).
- Only an allow-list of files is pushed (`CHECKPOINT_ALLOW`): never training states, pickles or stray files.
- Re-pushing an unchanged folder uploads nothing: one `paths-info` request compares the local files' hashes (git blob
  sha1, or sha256 for LFS files) with the remote's, and no commit is made when all match.
- A failed upload changes nothing locally (uploading only reads files) and leaves no partial commit on the Hub (a
  commit is atomic); `PushError` says what failed (file, HTTP status) and how to retry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import filter_repo_objects
from huggingface_hub.utils.sha import git_hash, sha_fileobj

logger = logging.getLogger(__name__)

# What a model repo gets from a checkpoint folder, and nothing else: weights, config, processor and tokenizer files,
# the remote code, the card, its plots, the evaluation JSON and what it was trained on. Training states (checkpoints/epoch_N with optimizer
# state and pickles), stray evaluation files and caches stay local.
CHECKPOINT_ALLOW = [
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
    "*.py",
    "README.md",
    "eval_results.json",
    "training_data.json",
    "plots/*.png",
]
CHECKPOINT_IGNORE = ["checkpoints/*", "*__pycache__*", "*.pyc", ".*"]
METRIC_ALLOW = ["*.py", "README.md", "requirements.txt"]
METRIC_IGNORE = ["tests.py", "*/tests.py", "__init__.py", "*/__init__.py", "*__pycache__*", "*.pyc", ".*"]
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
LOGIN_HINT = (
    "the Hub refused your credentials: log in with `hf auth login` (or `huggingface-cli login`), or set the "
    "HF_TOKEN environment variable to a token with write access"
)


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
        return list(filter_repo_objects(paths, allow_patterns=allow, ignore_patterns=list(self.ignore_patterns)))


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
    return FolderSpec(folder, repo_id, "model", tuple(CHECKPOINT_ALLOW), tuple(CHECKPOINT_IGNORE))


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


# A demo Space (`modeling_ter.demo.write_demo_space`): its app, requirements, card and the code it imports.
DEMO_SPACE_ALLOW = [
    "app.py",
    "requirements.txt",
    "README.md",
    "modeling_ter/*.py",
    "modeling_ter/*/*.py",
    "modeling_ter/*/*.md",
    "modeling_ter/encoders/fer2013_mini_xception/*",
    "trusted_f1/*.py",
]


def demo_space_spec(folder: str | Path, space_id: str) -> FolderSpec:
    """Check a demo Space folder written by `write_demo_space`: it needs `app.py` and a README with the Space header."""
    folder = Path(folder).expanduser().resolve()
    for name in ("app.py", "README.md", "requirements.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"The demo Space folder {folder} has no {name}: write it with modeling_ter.demo.write_demo_space."
            )
    return FolderSpec(folder, space_id, "space", tuple(DEMO_SPACE_ALLOW), tuple(CHECKPOINT_IGNORE), space_sdk="gradio")


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
            if seen.response.status_code in (401, 403):
                parts.append(LOGIN_HINT)
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
            logger.info(f"Nothing to push: {where} already has these {len(spec.files())} files (commit {head}).")
            return None
        logger.info(f"Pushing {len(changed)} changed file(s) to {where}: {', '.join(changed)}")
        commit = api.upload_folder(
            repo_id=spec.repo_id,
            folder_path=spec.folder,
            repo_type=spec.repo_type,
            revision=revision,
            commit_message=commit_message or f"Upload {spec.folder.name} with TER",
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
    logger.info(f"Pushed to {where}: commit {commit.oid}")
    return commit
