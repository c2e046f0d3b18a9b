"""Style and layer-analysis runs too big for memory are refused up front with the number;
thin content images are a one-line error, not a traceback from the backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.style import optimize, plan
from convlens.style.features import FeatureExtractor
from convlens.style.options import StyleOptions


def extractor(o: StyleOptions) -> FeatureExtractor:
    layers = optimize.resolve_layers(o)
    backbone = optimize.load_backbone(o.backbone, o.vgg_weights)
    return FeatureExtractor(backbone, layers.content + layers.style, o.fold_bn, layers.avgpool)


def test_style_scale_counts_in_the_memory_estimate(monkeypatch):
    """`--style-scale 20 --size 2000` was killed by the kernel at 15-22 GB: the style image
    is 400x the output's area; the estimate must see it and refuse with the number."""
    monkeypatch.setattr(plan, "available_bytes", lambda device: 16 << 30)
    o = StyleOptions(size=2000)
    ext = extractor(o)
    hw = plan.pyramid(1500, 2000, o)[-1].size
    base = plan.check_memory(ext, hw, o, torch.device("cpu"))
    big = StyleOptions(size=2000, style_scale=20)
    assert plan.estimate_bytes(ext, *hw, big) > 100 * base
    with pytest.raises(ConvlensError, match=r"at style scale 20 needs about \d+\.\d GiB"):
        plan.check_memory(ext, hw, big, torch.device("cpu"))
    # Shrinking the style costs nothing more than the output's own optimisation.
    assert plan.estimate_bytes(ext, *hw, StyleOptions(size=2000, style_scale=0.5)) == base


def test_thin_content_is_refused_before_work():
    style = np.full((64, 64, 3), 100, np.uint8)
    with pytest.raises(ConvlensError, match="aspect ratio over the 20:1 limit"):
        optimize.run_transfer(np.zeros((20000, 80, 3), np.uint8), style, steps=1)
    # Within the aspect limit, but a 64 px long side leaves 3 px for the short one.
    with pytest.raises(ConvlensError, match="under the 16 px minimum a side"):
        plan.pyramid(640, 32, StyleOptions(size=64))
    assert plan.pyramid(640, 32, StyleOptions(size=320))[-1].size == (320, 16)


def test_layer_analysis_too_big_for_memory_is_refused_up_front(monkeypatch):
    """`inspect layers --input-size 20000` was killed by the kernel: analysing holds every
    layer's output (VGG19 at 2048x2048: ~10 GB). A probe pass predicts it first."""
    from convlens.inspection import layers as lay
    from convlens.inspection.models import resolve_model

    model, _, _ = resolve_model("efficientnet-lite0", (256, 256))
    need = lay.analysis_bytes(model, (256, 256))
    assert 80 << 20 < need < 300 << 20
    monkeypatch.setattr(plan, "available_bytes", lambda device: need)
    with pytest.raises(ConvlensError, match=r"input size 256x256 needs about 0\.\d GiB"):
        lay.list_layers(model, (256, 256))
    monkeypatch.setattr(plan, "available_bytes", lambda device: 2 * need)
    assert lay.list_layers(model, (256, 256))
