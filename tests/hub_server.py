"""A small Hugging Face Hub on loopback, for push / pull tests without the network.

`LoopbackHub` is a stdlib `ThreadingHTTPServer` on 127.0.0.1 (an ephemeral port) that speaks the part of the
Hub's HTTP API that `huggingface_hub` 2.4 (with Xet disabled) and `transformers` / `evaluate` use to push and pull:
create / delete repos, commit files (regular and LFS), list them, and serve them back at any revision.
Repos live in a temporary folder with real commits: every commit has a sha, a parent and a full file tree, and
a revision is a branch name (``main``) or a commit sha (full or a unique prefix of at least 7 characters).

Endpoints (``{type}`` is ``models``, ``datasets`` or ``spaces``; ``{prefix}`` is ``""``, ``"datasets/"`` or
``"spaces/"``):

- ``GET /api/whoami-v2`` (401 without a valid token)
- ``POST /api/repos/create`` (409 when it exists), ``DELETE /api/repos/delete``, ``POST /api/validate-yaml``
- ``GET /api/{type}/{ns}/{name}[/revision/{rev}]``: id, sha, siblings (sizes and LFS info with ``?blobs=1``)
- ``GET /api/{type}/{ns}/{name}/tree/{rev}[/{path}][?recursive=1]``, ``POST .../paths-info/{rev}``
- ``POST .../preupload/{rev}``: ``"lfs"`` for binary files, LFS-pattern files and files >= 10 MiB, else ``"regular"``,
  with the remote ``oid`` so the client can skip unchanged files
- ``POST .../commit/{rev}``: NDJSON ``header``, ``file`` (base64), ``lfsFile``, ``deletedFile``, ``deletedFolder``
- ``POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch``: basic transfer; the objects the repo already holds get
  no ``actions`` (nothing to upload); the others get ``PUT /lfs-objects/{oid}`` and ``POST /lfs-verify/{oid}`` URLs
- ``HEAD|GET /{prefix}{ns}/{name}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (git blob id, or the sha256 for
  LFS files with ``X-Linked-Etag`` / ``X-Linked-Size``), ``Range``; errors are 404 with ``X-Error-Code``
  ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``.

Writes need ``Authorization: Bearer <token>`` (401 otherwise, 403 for another user's namespace); reads of public
repos do not; a private repo answers ``RepoNotFound`` to anyone but its owner, as the real Hub does.

Failure injection: ``hub.fail_next("commit" | "lfs_upload" | "lfs_batch" | "preupload" | "resolve", status=500,
times=1, drop=False)`` makes the next ``times`` matching requests answer ``status`` or, with ``drop=True``, read the
request and close the connection without an answer. Note that `huggingface_hub` retries 408/429/5xx and dropped
connections with a backoff (1+2+4+8+8 s) on most calls, but not the commit POST; to get a fast hard failure
use a status it does not retry (e.g. 507) or drop a commit.
``hub.log`` records every request as ``(method, kind, path)`` and ``hub.count(kind)`` counts them.

Pointing clients at it:

- in a subprocess (the robust way, needed for ``transformers`` ``from_pretrained`` and ``evaluate.load``, which read
  the endpoint at import time): run it with ``hub.env(hf_home=...)``, i.e. ``HF_ENDPOINT=hub.endpoint``,
  ``HF_TOKEN=hub.token``, ``HF_HUB_DISABLE_XET=1``, ``HF_HOME`` a fresh folder and no ``HF_HUB_OFFLINE``;
- in the test process: ``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_XET`` into
  ``huggingface_hub.constants`` at import, so set env vars there is too late. Pass ``endpoint=`` and ``token=``
  explicitly (``HfApi(endpoint=hub.endpoint, token=hub.token)``, ``hf_hub_download(..., endpoint=hub.endpoint)``)
  and patch ``constants.HF_HUB_OFFLINE = False`` and ``constants.HF_HUB_DISABLE_XET = True`` (``hub.patch_constants
  (monkeypatch)`` does this and also points ``constants.ENDPOINT`` / ``HUGGINGFACE_CO_URL_TEMPLATE`` at the server).
  Objects built at import time (``huggingface_hub``'s module-level ``api``, ``evaluate.config.HF_ENDPOINT``) keep
  the old endpoint: use a subprocess for those.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# The patterns of the Hub's default .gitattributes (abridged): files matching them are stored with LFS.
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.mlmodel *.model *.msgpack *.npy *.npz *.onnx *.ot "
    "*.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst "
    "*tfevents*"
).split()
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob: sha1 of ``"blob {size}\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """A file in a commit's tree: its git blob id, size, and the sha256 when it is stored with LFS."""

    blob_id: str
    size: int
    lfs_oid: str | None = None

    @property
    def etag(self) -> str:
        return self.lfs_oid or self.blob_id

    def tree_json(self, path: str) -> dict[str, Any]:
        info: dict[str, Any] = {"type": "file", "oid": self.blob_id, "size": self.size, "path": path}
        if self.lfs_oid is not None:
            pointer_size = len(lfs_pointer(self.lfs_oid, self.size))
            info["lfs"] = {"oid": self.lfs_oid, "size": self.size, "pointerSize": pointer_size}
        return info


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    date: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    lfs_oids: set[str] = field(default_factory=set)

    @property
    def url_path(self) -> str:
        return URL_PREFIXES[self.repo_type] + self.repo_id

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch name or a (prefix of a) commit sha points to."""
        revision = unquote(revision)
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.commits:
            return self.commits[revision]
        if re.fullmatch(r"[0-9a-f]{7,39}", revision):
            matches = [sha for sha in self.commits if sha.startswith(revision)]
            if len(matches) == 1:
                return self.commits[matches[0]]
        return None


class HubError(Exception):
    """An HTTP error answer: status, message and the Hub's ``X-Error-Code`` when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass
class _Failure:
    kind: str
    status: int
    times: int
    drop: bool


class LoopbackHub:
    """A Hub server on 127.0.0.1; use as a context manager or call `start()` / `stop()`.

    Args:
        user (`str`): the name of the token's owner (and a namespace it may write to).
        token (`str`): the only valid token.
        orgs (`tuple[str, ...]`): organisations the user belongs to (namespaces it may write to).
    """

    def __init__(self, user: str = "tester", token: str = "hf_loopback_token", orgs: tuple[str, ...] = ("org",)):
        self.user, self.token, self.orgs = user, token, tuple(orgs)
        self.root = Path(tempfile.mkdtemp(prefix="loopback_hub_"))
        (self.root / "objects").mkdir()
        (self.root / "lfs").mkdir()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.log: list[tuple[str, str, str]] = []
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("The loopback Hub is not running: call start() first.")
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoopbackHub":
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ----------------------------------------------------------------- client helpers
    def env(self, hf_home: str | Path, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that talks to this Hub (no offline flags, Xet off, its own HF_HOME)."""
        env = dict(os.environ if base is None else base)
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
            env.pop(key, None)
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_TOKEN=self.token,
            HF_HUB_DISABLE_XET="1",
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
            HF_UPDATE_DOWNLOAD_COUNTS="0",  # evaluate would HEAD an S3 bucket
        )
        return env

    def patch_constants(self, monkeypatch) -> None:
        """Point `huggingface_hub` in this process at the server (online, Xet off) for one test."""
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )

    # ----------------------------------------------------------------- failures and accounting
    def fail_next(self, kind: str, status: int = 500, times: int = 1, drop: bool = False) -> None:
        """Make the next `times` requests of `kind` answer `status` (or drop the connection when `drop`)."""
        with self._lock:
            self._failures.append(_Failure(kind, status, times, drop))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def count(self, kind: str) -> int:
        with self._lock:
            return Counter(k for _, k, _ in self.log)[kind]

    def _take_failure(self, kind: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.kind == kind and failure.times > 0:
                    failure.times -= 1
                    return failure
        return None

    # ----------------------------------------------------------------- storage
    def _store_blob(self, data: bytes) -> str:
        blob_id = git_blob_id(data)
        path = self.root / "objects" / blob_id
        if not path.exists():
            path.write_bytes(data)
        return blob_id

    def read_file(self, entry: Entry) -> bytes:
        """The content of a file in a commit."""
        if entry.lfs_oid is not None:
            return (self.root / "lfs" / entry.lfs_oid).read_bytes()
        return (self.root / "objects" / entry.blob_id).read_bytes()

    def _new_commit(self, repo: Repo, branch: str, files: dict[str, Entry], title: str) -> Commit:
        parent = repo.branches.get(branch)
        date = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        tree = json.dumps(sorted((p, e.blob_id) for p, e in files.items()))
        sha = hashlib.sha1(f"{parent}\n{tree}\n{title}\n{time.time_ns()}".encode()).hexdigest()
        commit = Commit(sha=sha, parent=parent, title=title, date=date, files=files)
        repo.commits[sha] = commit
        repo.branches[branch] = sha
        return commit

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False, sdk: str | None = None) -> Repo:
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, sdk=sdk, created_at=created)
        attributes = self._store_blob(GITATTRIBUTES)
        self._new_commit(repo, "main", {".gitattributes": Entry(attributes, len(GITATTRIBUTES))}, "initial commit")
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def head(self, repo_type: str, repo_id: str, revision: str = "main") -> Commit:
        """The commit `revision` points to (for assertions in tests)."""
        repo = self.repos[(repo_type, repo_id)]
        commit = repo.resolve(revision)
        if commit is None:
            raise KeyError(f"{repo_type} {repo_id} has no revision {revision!r}")
        return commit


class _Handler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1.0"

    def log_message(self, format: str, *args) -> None:  # silence the default stderr log
        pass

    # ----------------------------------------------------------------- plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        # One handler serves every request of a keep-alive connection: the cache is reset in `_dispatch`.
        if self._cached_body is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._cached_body = self.rfile.read(length) if length else b""
        return self._cached_body

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body() or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"Malformed JSON body: {err}") from err

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "GET"):
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None, method: str = "GET"):
        self._send(status, json.dumps(payload).encode(), headers, method)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        if auth != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.user

    def _require_write(self, namespace: str) -> None:
        user = self._user()
        if user is None:
            raise HubError(401, "You must be authenticated to do this (no token sent).")
        if namespace not in (user, *self.hub.orgs):
            raise HubError(403, f"You don't have the rights to write to the namespace {namespace!r}.")

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self._user() is None):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    def _dispatch(self, method: str) -> None:
        self._cached_body: bytes | None = None
        self._body()  # always consume the body: an unread one would be parsed as the next keep-alive request
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        kind = "other"
        try:
            kind, handler, args = self._route(method, path)
            with self.hub._lock:
                self.hub.log.append((method, kind, path))
            failure = self.hub._take_failure(kind)
            if failure is not None:
                if failure.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                raise HubError(failure.status, f"Injected failure ({kind})")
            handler(method, query, *args)
        except HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send_json({"error": err.message}, err.status, headers, method)
        except Exception as err:  # a bug in the server: answer 500 with the reason rather than hang the client
            self._send_json({"error": f"{type(err).__name__}: {err}"}, 500, None, method)

    def _route(self, method: str, path: str) -> tuple[str, Any, tuple]:
        api = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(/.*)?", path)
        if path == "/api/whoami-v2" and method == "GET":
            return "whoami", self._whoami, ()
        if path == "/api/repos/create" and method == "POST":
            return "create", self._create, ()
        if path == "/api/repos/delete" and method == "DELETE":
            return "delete", self._delete, ()
        if path == "/api/validate-yaml" and method == "POST":
            return "validate_yaml", self._validate_yaml, ()
        if api:
            repo_type, repo_id, rest = REPO_TYPES[api.group(1)], unquote(api.group(2)), api.group(3) or ""
            routes = [
                ("GET", r"(?:/revision/([^/]+))?", "info", self._info),
                ("GET", r"/tree/([^/]+)(?:/(.*))?", "tree", self._tree),
                ("POST", r"/paths-info/([^/]+)", "paths_info", self._paths_info),
                ("POST", r"/preupload/([^/]+)", "preupload", self._preupload),
                ("POST", r"/commit/([^/]+)", "commit", self._commit_files),
            ]
            for route_method, pattern, kind, handler in routes:
                match = re.fullmatch(pattern, rest)
                if match and method == route_method:
                    return kind, handler, (repo_type, repo_id, *match.groups())
        lfs_object = re.fullmatch(r"/lfs-(objects|verify)/(\w+)/([^/]+/[^/]+)/([0-9a-f]{64})", path)
        if lfs_object and method in ("PUT", "POST"):
            kind = "lfs_upload" if lfs_object.group(1) == "objects" else "lfs_verify"
            handler = self._lfs_put if kind == "lfs_upload" else self._lfs_verify
            return kind, handler, (lfs_object.group(2), unquote(lfs_object.group(3)), lfs_object.group(4))
        batch = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if batch and method == "POST":
            repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(batch.group(1) or "", "model")
            return "lfs_batch", self._lfs_batch, (repo_type, unquote(batch.group(2)))
        resolve = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve and method in ("GET", "HEAD"):
            repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(resolve.group(1) or "", "model")
            args = (repo_type, unquote(resolve.group(2)), resolve.group(3), unquote(resolve.group(4)))
            return "resolve", self._resolve, args
        raise HubError(404, f"Not found: {method} {path}")

    # ----------------------------------------------------------------- account and repos
    def _whoami(self, method, query) -> None:
        user = self._user()
        if user is None:
            raise HubError(401, "Authorization header is required")
        orgs = [{"type": "org", "name": org} for org in self.hub.orgs]
        token = {"displayName": "loopback", "role": "write"}
        auth = {"type": "access_token", "accessToken": token}
        self._send_json({"type": "user", "name": user, "orgs": orgs, "auth": auth})

    def _create(self, method, query) -> None:
        body = self._json_body()
        namespace = body.get("organization") or self._user() or ""
        self._require_write(namespace)
        repo_type, repo_id = body.get("type") or "model", f"{namespace}/{body['name']}"
        if repo_type == "space" and body.get("sdk") is None:
            raise HubError(400, "A Space needs an sdk.")
        private = body.get("visibility") == "private" or bool(body.get("private"))
        url = f"{self.hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"
        with self.hub._lock:
            if (repo_type, repo_id) in self.hub.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}", headers={})
            self.hub.create_repo(repo_type, repo_id, private=private, sdk=body.get("sdk"))
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _delete(self, method, query) -> None:
        body = self._json_body()
        namespace = body.get("organization") or self._user() or ""
        self._require_write(namespace)
        key = (body.get("type") or "model", f"{namespace}/{body['name']}")
        with self.hub._lock:
            if key not in self.hub.repos:
                raise HubError(404, "Repository not found", "RepoNotFound")
            del self.hub.repos[key]
        self._send(200, b"")

    def _validate_yaml(self, method, query) -> None:
        self._send_json({"errors": [], "warnings": []})

    # ----------------------------------------------------------------- reading
    def _info(self, method, query, repo_type: str, repo_id: str, revision: str | None) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit(repo, revision or "main")
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                info = entry.tree_json(path)
                sibling.update(size=entry.size, blobId=entry.blob_id)
                if "lfs" in info:
                    lfs = info["lfs"]
                    sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        info = {
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "tags": [],
            "siblings": siblings,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        if repo.repo_type == "space":
            info["sdk"] = repo.sdk
        self._send_json(info, method=method)

    def _tree_listing(self, commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        files, folders = [], set()
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(base + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                files.append(entry.tree_json(path))
        folder_items = [
            {
                "type": "directory",
                "oid": hashlib.sha1(folder.encode() + commit.sha.encode()).hexdigest(),
                "size": 0,
                "path": folder,
            }
            for folder in sorted(folders)
        ]
        return folder_items + files

    def _tree(self, method, query, repo_type: str, repo_id: str, revision: str, path: str | None) -> None:
        commit = self._commit(self._repo(repo_type, repo_id), revision)
        path = unquote(path or "")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        listing = self._tree_listing(commit, path, recursive)
        if path and not listing and path not in commit.files:
            raise HubError(404, f"{path} does not exist at this revision", "EntryNotFound")
        self._send_json(listing)

    def _paths_info(self, method, query, repo_type: str, repo_id: str, revision: str) -> None:
        commit = self._commit(self._repo(repo_type, repo_id), revision)
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            paths = self._json_body().get("paths", [])
        else:
            paths = parse_qs(self._body().decode()).get("paths", [])
        infos = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                infos.append(commit.files[path].tree_json(path))
            elif any(p.startswith(path + "/") for p in commit.files):
                infos.append(
                    {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
                )
        self._send_json(infos)

    def _resolve(self, method, query, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        data = self.hub.read_file(entry)
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{entry.etag}"',
            "Accept-Ranges": "bytes",
        }
        if entry.lfs_oid is not None:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_oid}"', "X-Linked-Size": str(entry.size)})
        status, byte_range = 200, self.headers.get("Range")
        if byte_range:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())
            if match is None or (not match.group(1) and not match.group(2)):
                raise HubError(416, f"Unsupported Range header {byte_range!r}")
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
            else:
                start, end = max(len(data) - int(match.group(2)), 0), len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise HubError(
                    416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            status, data = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        self._send(status, data, headers, method)

    # ----------------------------------------------------------------- writing
    def _writable_commit(self, repo_type: str, repo_id: str, revision: str) -> tuple[Repo, Commit]:
        repo = self._repo(repo_type, repo_id)
        self._require_write(repo_id.split("/")[0])
        return repo, self._commit(repo, revision)

    def _preupload(self, method, query, repo_type: str, repo_id: str, revision: str) -> None:
        repo, commit = self._writable_commit(repo_type, repo_id, revision)
        answers = []
        for item in self._json_body().get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            name = path.rsplit("/", 1)[-1]
            lfs = size >= LFS_SIZE_THRESHOLD or b"\0" in sample or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)
            remote = commit.files.get(path)
            answers.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": None if remote is None else remote.etag,
                }
            )
        self._send_json({"files": answers, "commitOid": commit.sha})

    def _commit_files(self, method, query, repo_type: str, repo_id: str, revision: str) -> None:
        repo, _ = self._writable_commit(repo_type, repo_id, revision)
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubError(400, f"Can only commit to a branch, not to {branch!r}.")
        if query.get("create_pr", ["0"])[0] in ("1", "true"):
            raise HubError(400, "Pull requests are not supported by the loopback Hub.")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line.")
        header = lines[0]["value"]
        with self.hub._lock:
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent is not None and not head.sha.startswith(parent):
                raise HubError(412, f"The branch head is {head.sha}, not the parent commit {parent}.")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"].strip("/")
                if key == "file":
                    data = base64.b64decode(value["content"])
                    files[path] = Entry(self.hub._store_blob(data), len(data))
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in repo.lfs_oids:
                        raise HubError(422, f"LFS object {oid} of {path} was never uploaded to this repo.")
                    size = (self.hub.root / "lfs" / oid).stat().st_size
                    files[path] = Entry(git_blob_id(lfs_pointer(oid, size)), size, oid)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    for file_path in [p for p in files if p.startswith(path + "/")]:
                        del files[file_path]
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}.")
            commit = self.hub._new_commit(repo, branch, files, header.get("summary") or "commit")
        self._send_json(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self.hub.endpoint}/{repo.url_path}/commit/{commit.sha}",
                "pullRequestUrl": None,
            }
        )

    def _lfs_batch(self, method, query, repo_type: str, repo_id: str) -> None:
        repo = self._repo(repo_type, repo_id)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, "The loopback Hub only serves LFS uploads (downloads go through /resolve).")
        self._require_write(repo_id.split("/")[0])
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in repo.lfs_oids:
                target = f"{repo.repo_type}/{quote(repo.repo_id, safe='/')}/{oid}"
                item["actions"] = {
                    "upload": {"href": f"{self.hub.endpoint}/lfs-objects/{target}", "header": {}},
                    "verify": {"href": f"{self.hub.endpoint}/lfs-verify/{target}", "header": {}},
                }
            objects.append(item)
        lfs_json = {"Content-Type": "application/vnd.git-lfs+json"}
        self._send_json({"transfer": "basic", "objects": objects}, headers=lfs_json)

    def _lfs_put(self, method, query, repo_type: str, repo_id: str, oid: str) -> None:
        repo = self._repo(repo_type, repo_id)
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"The uploaded content does not hash to {oid}.")
        (self.hub.root / "lfs" / oid).write_bytes(data)
        with self.hub._lock:
            repo.lfs_oids.add(oid)
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _lfs_verify(self, method, query, repo_type: str, repo_id: str, oid: str) -> None:
        repo = self._repo(repo_type, repo_id)
        body = self._json_body()
        path = self.hub.root / "lfs" / oid
        if oid not in repo.lfs_oids or path.stat().st_size != int(body.get("size", -1)):
            raise HubError(404, f"LFS object {oid} is missing or has the wrong size.")
        self._send_json({"success": True})
