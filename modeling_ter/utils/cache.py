"""The user's TER cache folder (converted encoders, frozen features)."""

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The user's TER cache: `$TER_CACHE` when set, else `~/.cache/ter`."""
    return Path(os.environ.get("TER_CACHE") or Path.home() / ".cache" / "ter")
