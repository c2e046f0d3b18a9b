"""VGG19 inflated to 3-D (Carreira & Zisserman 2017): the original Caffe ImageNet weights
(registry "vgg19"), each 3x3 kernel repeated 3 times along depth and divided by 3, up to a
chosen layer. Input: one-channel volumes (N, 1, D, H, W) already scaled to 0..1 (a CT through
a Hounsfield window, see `ct_window`); the grey value feeds all three colour channels.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from convlens.models import vgg
from convlens.models.registry import InputFormat, register_model
from convlens.nd.inflate import inflate

LAST = "relu3_1"
CT_WINDOW = (-1000.0, 1500.0)  # HU: air to dense bone, soft tissue in the middle


def ct_window(volume: np.ndarray, window: tuple[float, float] = CT_WINDOW) -> np.ndarray:
    lo, hi = window
    return np.clip((np.asarray(volume, np.float32) - lo) / (hi - lo), 0, 1)


class VGG19Inflated(nn.Module):
    """Named like the 2-D network (features.conv1_1, features.relu1_1, ...), cut at `last`."""

    def __init__(self, vgg2d=None, last: str = LAST) -> None:
        super().__init__()
        vgg2d = vgg2d if vgg2d is not None else vgg.VGG19(preprocess="caffe")
        names = [n for n, _ in vgg2d.features.named_children()]
        keep = nn.Sequential()
        for name in names[: names.index(last) + 1]:
            keep.add_module(name, getattr(vgg2d.features, name))
        self.features = inflate(keep)
        self.register_buffer("mean", vgg2d.mean.view(1, 3, 1, 1, 1).clone(), persistent=False)
        self.register_buffer("std", vgg2d.std.view(1, 3, 1, 1, 1).clone(), persistent=False)
        self.bgr = vgg2d.preprocess == "caffe"

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        x = volume.expand(-1, 3, -1, -1, -1)  # grey -> the same value in R, G and B
        x = (x - self.mean) / self.std  # grey: BGR order is the same tensor
        return self.features(x)


@register_model(
    name="vgg19-3d",
    tasks=("volume-backbone",),  # `inspect volume-units`, not the image scan
    about="VGG19 (original Caffe weights) inflated to 3-D, up to relu3_1",
    build=VGG19Inflated,
    input=InputFormat(
        None,
        channels="grey",
        value_range=1.0,
        note="(N, 1, D, H, W) volume in 0..1 (CT: ct_window)",
    ),
    # the 2-D network's file, package and licence
    weights=replace(vgg.WEIGHTS, source="VGG19 2-D ImageNet weights, inflated"),
    layer_presets={"inspect": ("features.relu1_1", "features.relu2_1", "features.relu3_1")},
)
def load(weights=None, last: str = LAST) -> VGG19Inflated:
    return VGG19Inflated(vgg.load_vgg19(weights), last).eval()
