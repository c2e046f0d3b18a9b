"""Gatys costs against values computed by hand, on 1-D, 2-D and 3-D feature maps."""

import pytest
import torch

from convlens.style.losses import (
    content_cost,
    gram,
    normalized_gram,
    style_cost,
    style_cost_from_grams,
    style_layer_cost,
    total_variation,
)


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_gram_and_style_cost_1d():
    a = t([[[1, 2, 3], [0, 1, -1]]])  # (B=1, C=2, L=3)
    assert gram(a)[0].tolist() == [[14, -1], [-1, 2]]
    # against zeros: sum G^2 / (2 * L * C)^2 = (196 + 1 + 1 + 4) / 12^2
    assert style_layer_cost(a, torch.zeros_like(a)).item() == pytest.approx(202 / 144)


def test_gram_and_style_cost_2d():
    a = t([[[[1, 2], [3, 4]]]])  # (1, 1, 2, 2)
    assert gram(a).item() == 30
    # against ones (G = 4): 26^2 / (2 * 4 * 1)^2
    assert style_layer_cost(a, torch.ones_like(a)).item() == pytest.approx(676 / 64)


def test_gram_and_style_cost_3d():
    a = torch.zeros(1, 2, 1, 2, 2, dtype=torch.float64)  # (B, C, D, H, W)
    a[0, 0] = 1
    a[0, 1, 0] = t([[1, 0], [0, -1]])
    assert gram(a)[0].tolist() == [[4, 0], [0, 2]]
    assert style_layer_cost(a, torch.zeros_like(a)).item() == pytest.approx(20 / 256)
    # a 3-D map and its 1-D flattening have the same Gram and cost
    flat = a.flatten(2)
    assert torch.equal(gram(flat), gram(a))
    assert style_layer_cost(flat, 0 * flat).item() == pytest.approx(20 / 256)


def test_content_cost_by_hand():
    a = t([[[1, 2, 3]]])
    b = t([[[1, 0, 0]]])
    assert content_cost(a, b).item() == pytest.approx(0.5 * (4 + 9))
    a3 = torch.ones(1, 2, 2, 2, 2, dtype=torch.float64)
    assert content_cost(a3, 0 * a3).item() == pytest.approx(8.0)


def test_weighted_style_cost_and_normalised_grams():
    torch.manual_seed(0)
    s1, g1 = torch.randn(1, 3, 5, 4), torch.randn(1, 3, 5, 4)
    s2, g2 = torch.randn(1, 4, 7), torch.randn(1, 4, 7)
    total = style_cost([s1, s2], [g1, g2], [0.25, 2.0])
    expected = 0.25 * style_layer_cost(s1, g1) + 2.0 * style_layer_cost(s2, g2)
    assert total.item() == pytest.approx(expected.item())
    # position-normalised Grams give the same layer cost when sizes match
    via_grams = style_cost_from_grams(normalized_gram(s1), normalized_gram(g1))
    assert via_grams.item() == pytest.approx(style_layer_cost(s1, g1).item(), rel=1e-5)


def test_total_variation_by_hand():
    x = t([[[[0, 1], [0, 1]]]])  # horizontal steps of 1, no vertical change
    assert total_variation(x).item() == pytest.approx(1.0)
    assert total_variation(torch.ones(1, 3, 4, 4)).item() == 0.0
    line = t([[[0, 2, 2]]])  # 1-D: diffs 2, 0 -> mean of squares 2
    assert total_variation(line).item() == pytest.approx(2.0)


def test_shape_errors():
    with pytest.raises(ValueError):
        gram(torch.zeros(3, 4))
    with pytest.raises(ValueError):
        style_layer_cost(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))


def test_loss_modules_equal_the_functional_costs():
    from convlens.style.losses import ContentLoss, StyleLoss, TVLoss, WeightedSum

    torch.manual_seed(1)
    target, feats = torch.randn(1, 3, 5, 4), torch.randn(1, 3, 5, 4)
    assert ContentLoss(target)(feats).item() == pytest.approx(
        content_cost(target, feats).item() / target.numel()
    )
    style_map = torch.randn(1, 3, 7, 6)  # a different size: Grams are position-normalised
    expected = style_cost_from_grams(normalized_gram(style_map), normalized_gram(feats))
    assert torch.equal(StyleLoss(StyleLoss.get_target(style_map))(feats), expected)
    assert torch.equal(TVLoss()(feats), total_variation(feats))
    two = WeightedSum([ContentLoss(target), TVLoss()], [2.0, 0.5])
    assert two([feats, feats]).item() == pytest.approx(
        2.0 * ContentLoss(target)(feats).item() + 0.5 * total_variation(feats).item()
    )
    with pytest.raises(ValueError):
        WeightedSum([TVLoss()], [1.0, 2.0])


def test_gram_of_channels_last_maps_keeps_the_gradient_channels_last():
    """The Gram of a channels-last map equals the NCHW one, and its gradient comes back
    channels-last (an NCHW gradient made every VGG19 step add and ReLU-backward in mixed
    layouts, slower than plain NCHW)."""
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    for fmt, dims in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
        a = (x if dims == 4 else x[:, :, None]).contiguous(memory_format=fmt)
        a.requires_grad_(True)
        b = a * 1.0  # a non-leaf, as a ReLU output is
        grads = []
        b.register_hook(grads.append)
        g = gram(b)
        assert torch.allclose(g, gram(b.detach().contiguous()))
        g.square().sum().backward()
        assert grads[0].is_contiguous(memory_format=fmt)
