"""Inflate a 2-D ConvNet to 3-D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?").

Each k x k kernel is repeated k times along the new depth axis and divided by k, so a volume
made of one image repeated along depth gives, at every depth, the 2-D network's activations on
that image (away from the depth borders): a pretrained 2-D network becomes a 3-D one with no
training. Strides, padding and dilation copy the height value to depth; pooling likewise.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _conv3d(c: nn.Conv2d) -> nn.Conv3d:
    if c.groups != 1 and c.groups != c.in_channels:
        raise ValueError("inflate: grouped convolutions other than depthwise are not supported")
    if isinstance(c.padding, str):
        raise ValueError("inflate: string padding is not supported")
    k = c.kernel_size[0]
    out = nn.Conv3d(
        c.in_channels,
        c.out_channels,
        (k, *c.kernel_size),
        stride=(c.stride[0], *c.stride),
        padding=(c.padding[0], *c.padding),
        dilation=(c.dilation[0], *c.dilation),
        groups=c.groups,
        bias=c.bias is not None,
        padding_mode=c.padding_mode,
    )
    with torch.no_grad():
        out.weight.copy_(c.weight.unsqueeze(2).repeat(1, 1, k, 1, 1) / k)
        if c.bias is not None:
            out.bias.copy_(c.bias)
    return out


def _pool3d(p: nn.Module) -> nn.Module:
    def triple(v):
        return (v, v, v) if isinstance(v, int) else (v[0], *v)

    if isinstance(p, nn.MaxPool2d):
        return nn.MaxPool3d(
            triple(p.kernel_size),
            triple(p.stride),
            triple(p.padding),
            triple(p.dilation),
            ceil_mode=p.ceil_mode,
        )
    return nn.AvgPool3d(
        triple(p.kernel_size),
        triple(p.stride),
        triple(p.padding),
        ceil_mode=p.ceil_mode,
        count_include_pad=p.count_include_pad,
    )


def _bn3d(b: nn.BatchNorm2d) -> nn.BatchNorm3d:
    out = nn.BatchNorm3d(b.num_features, b.eps, b.momentum, b.affine, b.track_running_stats)
    out.load_state_dict(b.state_dict())
    return out


def _inflated(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.Conv2d):
        return _conv3d(m)
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        return _pool3d(m)
    if isinstance(m, nn.BatchNorm2d):
        return _bn3d(m)
    if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        raise ValueError("inflate: adaptive pooling is not supported; cut the network before it")
    return None


def inflate(model: nn.Module) -> nn.Module:
    """A 3-D copy of a 2-D network built from nn.Sequential-style submodules (convolutions,
    pooling, batch norm, element-wise layers). The original is left untouched."""
    out = copy.deepcopy(model)
    replace = {}
    for name, m in out.named_modules():
        new = _inflated(m)
        if new is not None:
            replace[name] = new
    if "" in replace:  # the model is itself one layer
        return replace[""]
    if not replace:
        raise ValueError("inflate: the network has no 2-D convolution or pooling to inflate")
    for name, new in replace.items():
        parent_name, _, leaf = name.rpartition(".")
        setattr(out.get_submodule(parent_name) if parent_name else out, leaf, new)
    return out
