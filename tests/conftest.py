"""Test-suite settings: every test is offline, and a Hub on loopback (tests/hub_server.py) for push / pull tests.

Clients that talk to the loopback Hub must not be offline: in a subprocess, run with `env=hub_env` (HF_HUB_OFFLINE
removed, HF_ENDPOINT / HF_TOKEN / HF_HUB_DISABLE_XET=1 / a fresh HF_HOME set); in this process, take the `hub_api`
fixture, which turns `huggingface_hub` online and points it at the server for that one test.
"""

from __future__ import annotations

import os
import sys

import pytest
from hub_server import LoopbackHub

# Set before any test module imports huggingface_hub / transformers (they read it at import time), and inherited
# by every subprocess a test starts.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep each test offline, even when huggingface_hub was imported before this file set HF_HUB_OFFLINE."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def hub_server():
    """A `LoopbackHub` on 127.0.0.1 for the whole session (`.endpoint`, `.token`, `.fail_next`, `.log`)."""
    with LoopbackHub() as hub:
        yield hub


@pytest.fixture
def hub_env(hub_server: LoopbackHub, tmp_path) -> dict[str, str]:
    """Environment for a subprocess client of `hub_server`: online, Xet off, token set, its own empty HF_HOME."""
    return hub_server.env(hf_home=tmp_path / "hf_home")


@pytest.fixture
def hub_api(hub_server: LoopbackHub, monkeypatch: pytest.MonkeyPatch):
    """An `HfApi` on `hub_server`, with huggingface_hub in this process online and pointed at it for this test."""
    from huggingface_hub import HfApi

    hub_server.patch_constants(monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
