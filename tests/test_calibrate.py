"""Threshold calibration on synthetic labelled embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.faces.calibrate import (
    calibration_report,
    choose_threshold,
    format_report,
    labelled_photos,
    pair_scores,
)


def clusters(rng, people=30, per=6, spread=0.15, d=128):
    centres = rng.standard_normal((people, d)) / np.sqrt(d)
    x = np.repeat(centres, per, 0) + rng.standard_normal((people * per, d)) * spread / np.sqrt(d)
    return x.astype(np.float32), np.repeat([f"p{i}" for i in range(people)], per)


def test_pairs_all_genuine_and_sampled_impostors():
    rng = np.random.default_rng(0)
    x, y = clusters(rng, people=10, per=4)
    d, same = pair_scores(x, y)
    assert same.sum() == 10 * 6 and (~same).sum() == 40 * 39 // 2 - 60
    d2, same2 = pair_scores(x, y, max_impostors=100)
    assert same2.sum() == 60 and (~same2).sum() == 100
    i, j = 0, 1
    assert d[0] == pytest.approx(np.linalg.norm(x[i] - x[j]), rel=1e-5)


def test_report_and_threshold_choice():
    rng = np.random.default_rng(1)
    x, y = clusters(rng)
    d, same = pair_scores(x, y)
    report = calibration_report(d, same)
    assert report["eer"] < 0.01
    tau = choose_threshold(report, 1e-2)
    # at that τ, measured FAR is within the target
    assert ((d <= tau) & ~same).sum() / (~same).sum() <= 1e-2
    text = format_report(report, len(x), 30, 0)
    assert "EER" in text and "FAR 0.001" in text
    small = calibration_report(*pair_scores(x, y, max_impostors=500))
    with pytest.raises(ConvlensError, match="impostor pairs"):
        choose_threshold(small, 1e-3)
    with pytest.raises(ConvlensError, match="not computed"):
        choose_threshold(report, 0.5)


def test_labelled_folder_needs_people(tmp_path):
    (tmp_path / "only").mkdir()
    with pytest.raises(ConvlensError, match="at least two people"):
        labelled_photos(tmp_path)
