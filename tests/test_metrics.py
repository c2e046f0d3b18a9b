import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.metrics import all_pairs, best_accuracy, equal_error_rate, tar_at_far


def test_tar_at_far_on_hand_built_pairs():
    # 4 genuine at 0.1..0.4, 4 impostor at 0.35, 0.5, 0.6, 0.7
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6, 0.7])
    same = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    tar, t = tar_at_far(d, same, 0.0)
    assert tar == 0.75 and t == pytest.approx(0.3)
    tar, t = tar_at_far(d, same, 0.25)
    assert tar == 1.0 and t == pytest.approx(0.4)
    acc, t = best_accuracy(d, same)
    assert acc == 7 / 8
    eer, _ = equal_error_rate(d, same)
    assert eer == pytest.approx(0.25)


def test_all_pairs_distances_and_labels():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    d, same = all_pairs(x, np.array(["a", "a", "b"]))
    np.testing.assert_allclose(d, [5.0, 1.0, np.sqrt(18)])
    assert same.tolist() == [True, False, False]


def test_roc_needs_both_kinds_of_pair():
    with pytest.raises(ConvlensError, match="impostor"):
        tar_at_far(np.array([0.1, 0.2]), np.array([True, True]), 1e-3)


def test_plot_roc_draws_perfectly_separated_scores(tmp_path):
    from PIL import Image

    from convlens.metrics import plot_roc

    d = np.r_[np.linspace(0.1, 0.3, 20), np.linspace(0.7, 1.2, 200)]
    same = np.r_[np.ones(20, bool), np.zeros(200, bool)]
    out = tmp_path / "roc.png"
    plot_roc({"separated": (d, same)}, out)
    assert Image.open(out).size[0] > 500
