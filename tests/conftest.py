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


# One session fixture per shared data folder: a test asks for `photos_dir` and gets
# ../shared/data/faces/photos, or is skipped when it is absent.
DATA_FIXTURES = {
    "photos_dir": "faces/photos",
    "orl_dir": "faces/orl",
    "styles_dir": "styles",
    "shared_audio": "audio",
    "shared_volumes": "volumes",
    "liveness_dir": "liveness",
}


def _data_fixture(name: str, sub: str):
    def folder() -> Path:
        return _shared(sub)

    folder.__doc__ = f"shared/data/{sub} (the test is skipped when it is absent)"
    return pytest.fixture(scope="session", name=name)(folder)


for _name, _sub in DATA_FIXTURES.items():
    globals()[_name] = _data_fixture(_name, _sub)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from 2 threads, and on a shared CPU 2 threads can stall."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
