"""Atomic file writes: a reader never sees a half-written file."""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; when the block ends without error it replaces `path` with
    `os.replace`, else it is removed. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json_atomic(data: dict, path: str | os.PathLike) -> Path:
    """Writes `data` as indented JSON (atomically, see `atomic_path`); returns the path."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
    return Path(path)
