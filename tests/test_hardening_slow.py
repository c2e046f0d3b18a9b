"""Opt-in (CONVLENS_SLOW=1): the image fuzz of benchmarks/fuzz_images.py, asserted. At least
10,000 generated images (CONVLENS_FUZZ_COUNT to change) through the default detector in
child processes: no crash, no exception other than ConvlensError, every accepted image
within the memory budget. Takes about an hour on 2 cores."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_fuzzed_images_never_crash_or_blow_the_budget(tmp_path):
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "benchmarks/fuzz_images.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    count = os.environ.get("CONVLENS_FUZZ_COUNT", "10000")
    out = tmp_path / "fuzz.json"
    fuzz.main(["--count", count, "--max-minutes", "600", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["inputs_tried"] == int(count)
    assert report["crashes"] == []
    assert report["n_tracebacks"] == 0, report["tracebacks"][:5]
    assert report["over_budget"] == []
    for case in report["budget_cases"]:
        assert case["returncode"] == 0 and case["status"] in ("ok", "refused"), case
        assert (case["peak"] or 0) <= fuzz.BUDGET_BYTES, case
