"""Receptive-field rules per layer type: what a module or function does to each spatial axis.

A rule returns the output's field, None for "no geometric rule here" (the generic union
applies), or raises Unknown for an op that resamples in a way no rule covers (then measured,
see propagate._probe). Every rule works per axis and takes the number of spatial axes from
the field, so 1-d, 2-d and 3-d layers share it.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from convlens.inspection.receptive.axis import Unknown, union_axis
from convlens.inspection.receptive.field import ReceptiveField


def per_axis(v, n: int) -> tuple[int, ...]:
    """A layer parameter (int, or a sequence of one or n ints) as n ints."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return (int(v[0]),) * n
        if len(v) != n:
            raise Unknown(f"bad {n}-d parameter {v}")
        return tuple(int(x) for x in v)
    return (int(v),) * n


def spatial(t, ndim: int) -> tuple[int, ...] | None:
    """The spatial shape of an (N, C, *spatial) tensor with `ndim` spatial axes, else None."""
    if isinstance(t, torch.Tensor) and t.dim() == ndim + 2:
        return tuple(t.shape[2:])
    return None


def window(rf: ReceptiveField, out, k, stride, pad, dilation) -> ReceptiveField | None:
    """Conv/pool window on every axis; `pad` is the padding before each axis."""
    n = rf.ndim
    sizes = spatial(out, n)
    if sizes is None:
        return None  # a layer of another dimensionality: the generic rule decides
    ks, ss, ps, ds = (per_axis(v, n) for v in (k, stride, pad, dilation))
    return rf.map(lambda i, a: a.window(ks[i], ss[i], ps[i], ds[i], sizes[i]))


def conv_padding(padding, k, dilation, n: int) -> tuple[int, ...]:
    if padding == "same":
        # torch pads (total // 2) before and the rest after for padding="same".
        pairs = zip(per_axis(k, n), per_axis(dilation, n), strict=True)
        return tuple(d * (kk - 1) // 2 for kk, d in pairs)
    if padding == "valid":
        return (0,) * n
    return per_axis(padding, n)


def pad(rf: ReceptiveField, out, amounts: tuple[int, ...]) -> ReceptiveField | None:
    """F.pad-style (last axis before, after, second-last before, after, ...) padding: the new
    positions see nothing."""
    sizes = spatial(out, rf.ndim)
    if sizes is None:
        return None
    n = rf.ndim

    def before(i: int) -> int:
        e = n - 1 - i  # pad pairs count from the last axis
        return int(amounts[2 * e]) if len(amounts) >= 2 * e + 2 else 0

    return rf.map(lambda i, a: a.shift(-before(i), sizes[i]))


def crop(rf: ReceptiveField, out, starts: tuple[int, ...]) -> ReceptiveField:
    sizes = spatial(out, rf.ndim)
    return rf.map(lambda i, a: a.shift(starts[i], sizes[i]))


def adaptive(rf: ReceptiveField, out) -> ReceptiveField | None:
    sizes = spatial(out, rf.ndim)
    if sizes is None:
        return None
    if all(s == 1 for s in sizes):
        return ReceptiveField.whole(rf.ndim)
    return rf.map(lambda i, a: a.bins(sizes[i]))


def generic(inputs: list[tuple[torch.Tensor, ReceptiveField]], out) -> ReceptiveField | None:
    """Ops without a geometric rule: union of the fields of the inputs at the output's size."""
    known = [(t, rf) for t, rf in inputs if isinstance(rf, ReceptiveField)]
    if not known or not isinstance(out, torch.Tensor):
        return None
    for _, rf in known:
        if rf.unknown:
            return rf
    n = known[0][1].ndim
    out_sizes = spatial(out, n)
    if out_sizes is None:
        return ReceptiveField.whole(n)  # spatial axes gone (flatten, linear, mean over H, W)
    # Inputs at the output's size are the spatial sources; a 1x1 input broadcast onto a larger
    # map is a per-channel gate (see the package docstring) and does not count.
    rfs = [rf for t, rf in known if spatial(t, n) == out_sizes]
    if not rfs:
        if all(s == 1 for s in out_sizes):
            return ReceptiveField.whole(n)  # a reduction over the spatial axes
        sizes = ", ".join(sorted({str(spatial(t, n)) for t, _ in known}))
        raise Unknown(f"an op changes the spatial size from {sizes} to {out_sizes}")
    if any(rf.is_global for rf in rfs):
        return ReceptiveField.whole(n)
    return rfs[0].map(lambda i, _: union_axis([rf.axes[i] for rf in rfs]))


def _classes(*names: str) -> tuple[type, ...]:
    """The torch.nn classes of these names that this torch has."""
    return tuple(getattr(nn, name) for name in names if hasattr(nn, name))


def _nd(*stems: str) -> tuple[type, ...]:
    return _classes(*(f"{stem}{d}d" for stem in stems for d in (1, 2, 3)))


_CONVS = _nd("Conv")
_POOLS = _nd("MaxPool", "AvgPool", "LPPool")
_PADS = _nd("ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad", "CircularPad")
_ADAPTIVE = _nd("AdaptiveAvgPool", "AdaptiveMaxPool")
_NO_RULE = _nd("ConvTranspose") + _classes("Upsample", "PixelShuffle", "Fold", "Unfold")


# Leaf modules with a geometric rule; every other torch.nn leaf is element-wise or global.
def module_rule(m: nn.Module, rf: ReceptiveField, out) -> ReceptiveField | None:
    if isinstance(m, _CONVS):
        padding = conv_padding(m.padding, m.kernel_size, m.dilation, len(m.kernel_size))
        return window(rf, out, m.kernel_size, m.stride, padding, m.dilation)
    if isinstance(m, _POOLS):
        stride = m.stride or m.kernel_size
        padding, dilation = getattr(m, "padding", 0), getattr(m, "dilation", 1)
        return window(rf, out, m.kernel_size, stride, padding, dilation)
    if isinstance(m, _PADS):
        return pad(rf, out, tuple(m.padding))
    if isinstance(m, _ADAPTIVE):
        return adaptive(rf, out)
    if isinstance(m, _NO_RULE):
        raise Unknown(f"no receptive-field rule for {type(m).__name__}")
    return None  # generic


def _arg(args, kwargs, i, name, default):
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


_F_CONVS = (F.conv1d, F.conv2d, F.conv3d)
_F_MAX_POOLS = (F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.max_pool1d, torch.max_pool2d)
_F_AVG_POOLS = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)
_F_ADAPTIVE = tuple(
    getattr(F, f"adaptive_{kind}_pool{d}d") for kind in ("avg", "max") for d in (1, 2, 3)
)
_F_NO_RULE = (
    F.interpolate,
    F.conv_transpose1d,
    F.conv_transpose2d,
    F.conv_transpose3d,
    F.pixel_shuffle,
    F.unfold,
    F.fold,
)


def function_rule(fn, args, kwargs, rf: ReceptiveField, out) -> ReceptiveField | None:
    if fn in _F_CONVS:
        k = tuple(_arg(args, kwargs, 1, "weight", None).shape[2:])
        dilation = _arg(args, kwargs, 5, "dilation", 1)
        padding = conv_padding(_arg(args, kwargs, 4, "padding", 0), k, dilation, len(k))
        return window(rf, out, k, _arg(args, kwargs, 3, "stride", 1), padding, dilation)
    if fn in _F_MAX_POOLS or fn in _F_AVG_POOLS:
        k = _arg(args, kwargs, 1, "kernel_size", None)
        stride = _arg(args, kwargs, 2, "stride", None) or k
        padding = _arg(args, kwargs, 3, "padding", 0)
        dilation = 1 if fn in _F_AVG_POOLS else _arg(args, kwargs, 4, "dilation", 1)
        return window(rf, out, k, stride, padding, dilation)
    if fn is F.pad:
        return pad(rf, out, tuple(_arg(args, kwargs, 1, "pad", ())))
    if fn in _F_ADAPTIVE:
        return adaptive(rf, out)
    if fn in _F_NO_RULE:
        raise Unknown(f"no receptive-field rule for {fn.__name__}")
    if fn is operator.getitem and isinstance(args[0], torch.Tensor):
        return _slice(rf, args[0], args[1], out)
    return None


def _slice(rf: ReceptiveField, t: torch.Tensor, index, out) -> ReceptiveField | None:
    """x[..., a:b, c:d]: cropping moves the field; anything fancier falls to the generic rule."""
    dims = rf.ndim + 2
    if t.dim() != dims or not isinstance(index, tuple):
        return None
    if any(i is Ellipsis for i in index):
        pos = index.index(Ellipsis)
        index = index[:pos] + (slice(None),) * (dims - len(index) + 1) + index[pos + 1 :]
    index = index + (slice(None),) * (dims - len(index))
    if any(not isinstance(s, slice) or s.step not in (None, 1) for s in index):
        return None
    starts = []
    for dim in range(2, dims):
        start, size = index[dim].start or 0, t.shape[dim]
        starts.append(max(start + size, 0) if start < 0 else min(start, size))
    return crop(rf, out, tuple(starts))
