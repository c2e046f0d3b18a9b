"""Shared fixtures: the data folder beside the checkout, skipped cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("CONVLENS_SHARED", ROOT.parent / "shared")) / "data"


def _shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.is_dir():
        pytest.skip(f"shared data {path} not present")
    return path


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return _shared("faces/photos")


@pytest.fixture(scope="session")
def orl_dir() -> Path:
    return _shared("faces/orl")


@pytest.fixture(scope="session")
def styles_dir() -> Path:
    return _shared("styles")


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    return _shared("audio")


@pytest.fixture(scope="session")
def shared_volumes() -> Path:
    return _shared("volumes")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from 2 threads, and on a shared CPU 2 threads can stall."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def liveness_dir() -> Path:
    return _shared("liveness")


@pytest.fixture(scope="session")
def attack_clips():
    """benchmarks/attack_clips.py, the generator of presentation-attack clips."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import attack_clips

    return attack_clips


def pytest_collection_modifyitems(config, items):
    """@pytest.mark.slow tests (long fuzz runs) only with CONVLENS_SLOW=1."""
    import os

    if os.environ.get("CONVLENS_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set CONVLENS_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
