"""Layers by number of spatial dimensions, and one ConvNet definition for 1-D, 2-D and 3-D.

    from convlens.nd import NdConvNet
    net = NdConvNet(nd=1, in_channels=40)       # (N, 40, frames) -> (N, 128)
    net = NdConvNet(nd=3, in_channels=1)        # (N, 1, D, H, W) -> (N, 128)

torch names its layers Conv1d/Conv2d/Conv3d; these helpers pick the class from `nd`, so a
network is written once and built for signals, images or volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError

SPATIAL = (1, 2, 3)


def _check(nd: int) -> int:
    if nd not in SPATIAL:
        raise ValueError(f"nd must be 1, 2 or 3 spatial dimensions, not {nd!r}")
    return nd


def conv(nd: int, cin: int, cout: int, kernel: int = 3, stride: int = 1, bias: bool = False):
    """Conv{nd}d with 'same' padding for odd kernels."""
    cls = getattr(nn, f"Conv{_check(nd)}d")
    return cls(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)


def batch_norm(nd: int, channels: int) -> nn.Module:
    return getattr(nn, f"BatchNorm{_check(nd)}d")(channels)


def max_pool(nd: int, kernel: int = 2) -> nn.Module:
    return getattr(nn, f"MaxPool{_check(nd)}d")(kernel)


def avg_pool(nd: int, kernel: int = 2) -> nn.Module:
    return getattr(nn, f"AvgPool{_check(nd)}d")(kernel)


def conv_block(nd: int, cin: int, cout: int, convs: int = 2, kernel: int = 3) -> nn.Sequential:
    """`convs` times conv + batch norm + ReLU, then a 2-wide max-pool along every axis."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [conv(nd, cin if i == 0 else cout, cout, kernel), batch_norm(nd, cout)]
        layers.append(nn.ReLU(inplace=True))
    layers.append(max_pool(nd, 2))
    return nn.Sequential(*layers)


class NdConvNet(nn.Module):
    """A stem and stages of conv-BN-ReLU blocks (each ending in a 2-wide max-pool), global
    average pooling over every spatial axis, and a linear embedding, L2-normalised when
    `normalize`. The global pooling makes it accept any input length/size of at least
    2**len(widths) positions per axis.

    Submodules are named stem, stage1.., embed (the trainer's `train_from` freezes by name).
    """

    def __init__(
        self,
        nd: int,
        in_channels: int,
        widths: Sequence[int] = (32, 64, 128),
        embedding_dim: int = 128,
        normalize: bool = True,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        self.nd = _check(nd)
        self.normalize = bool(normalize)
        self.embedding_dim = int(embedding_dim)
        widths = [int(w) for w in widths]
        if not widths:
            raise ValueError("NdConvNet needs at least one stage width")
        self.stem = conv_block(nd, in_channels, widths[0], convs=1, kernel=kernel)
        for i, (cin, cout) in enumerate(zip(widths, widths[1:], strict=False), start=1):
            self.add_module(f"stage{i}", conv_block(nd, cin, cout, kernel=kernel))
        self.n_stages = len(widths) - 1
        self.embed = nn.Linear(widths[-1], self.embedding_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, C, *spatial)."""
        x = self.stem(x)
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"stage{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(2).mean(2)  # global average over all spatial axes
        x = self.embed(x)
        return F.normalize(x, dim=1) if self.normalize else x


class SequentialTaps(nn.Module):
    """The output maps of the named `layers` of a Sequential (VGG19's `features`, 2-D or
    inflated to 3-D), run only up to the deepest of them."""

    def __init__(self, features: nn.Sequential, layers: Sequence[str]) -> None:
        super().__init__()
        self.features, self.layers = features, tuple(layers)
        names = [n for n, _ in features.named_children()]
        missing = [n for n in self.layers if n not in names]
        if missing:
            raise ConvlensError(f"{missing[0]!r}: no such layer (known: {', '.join(names)})")
        self.stop = max(names.index(n) for n in self.layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, (name, layer) in enumerate(self.features.named_children()):
            x = layer(x)
            if name in self.layers:
                out[name] = x
            if i >= self.stop:
                break
        return out
