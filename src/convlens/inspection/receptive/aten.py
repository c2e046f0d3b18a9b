"""The fallback for modules torch.fx cannot trace symbolically: an ATen-level graph.

A module with Python control flow on shapes (SmallConvNet resizes its input only when it is
not 64x64) defeats symbolic tracing; make_fx traces it instead on the real input, where every
shape is concrete. Forward hooks wrap each submodule's output in an identity `convlens::tap`
op, so the flat ATen graph still says where every named module's output is. The rules here
are those of the ATen ops such a graph holds.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from convlens.errors import ConvlensError
from convlens.inspection.receptive.axis import Unknown
from convlens.inspection.receptive.field import ReceptiveField
from convlens.inspection.receptive.rules import adaptive, crop, pad, window
from convlens.inspection.receptive.values import V, join, tensors


@torch.library.custom_op("convlens::tap", mutates_args=())
def _tap(x: torch.Tensor, index: int) -> torch.Tensor:
    """Identity marking a module's output in an ATen graph (see trace_aten)."""
    return x.clone()


@_tap.register_fake
def _(x, index):
    return torch.empty_like(x)


TAP = torch.ops.convlens.tap.default


def _ops(*names: str) -> tuple:
    aten = torch.ops.aten
    return tuple(getattr(aten, n).default for n in names if hasattr(aten, n))


_PADS = _ops(
    "constant_pad_nd",
    *(f"{kind}_pad{d}d" for kind in ("reflection", "replication") for d in (1, 2, 3)),
)
_MAX_POOLS = _ops(
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
)
_AVG_POOLS = _ops("avg_pool1d", "avg_pool2d", "avg_pool3d")
_ADAPTIVE = _ops(
    *(f"_adaptive_avg_pool{d}d" for d in (2, 3)),
    *(f"adaptive_max_pool{d}d" for d in (1, 2, 3)),
)


def aten_rule(fn, args, kwargs, rf: ReceptiveField, out) -> ReceptiveField | None:
    """Rules for the ATen ops of a make_fx graph (called with positional arguments)."""
    n = len(args)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if fn is torch.ops.aten.convolution.default:
        if args[6]:
            raise Unknown("no receptive-field rule for a transposed convolution")
        return window(rf, out, tuple(args[1].shape[2:]), args[3], args[4], args[5])
    if fn in _PADS:
        return pad(rf, out, tuple(args[1]))
    if fn in _MAX_POOLS or fn in _AVG_POOLS:
        k = args[1]
        stride = args[2] if n > 2 and args[2] else k
        padding = args[3] if n > 3 else 0
        dilation = args[4] if n > 4 and fn in _MAX_POOLS else 1
        return window(rf, out, k, stride, padding, dilation)
    if fn in _ADAPTIVE:
        return adaptive(rf, out)
    if fn is torch.ops.aten.slice.Tensor:
        return _slice(rf, args, out)
    return None


def _slice(rf: ReceptiveField, args, out) -> ReceptiveField | None:
    """aten.slice(x, dim, start, end, step): a crop along one spatial axis."""
    n, dims = len(args), rf.ndim + 2
    if args[0].dim() != dims:
        return None
    dim = (args[1] if n > 1 else 0) % dims
    if (args[4] if n > 4 else 1) != 1:
        return None
    if dim < 2:
        return rf
    start = (args[2] if n > 2 and args[2] is not None else 0) or 0
    size = args[0].shape[dim]
    start = max(start + size, 0) if start < 0 else min(start, size)
    starts = tuple(start if d == dim else 0 for d in range(2, dims))
    return crop(rf, out, starts)


def trace_aten(m: nn.Module, name: str, args, kwargs, error: Exception, taps: list):
    """(graph module, graph, placeholder -> V) of `m` called on `args`, `kwargs` (V's).

    Every submodule's output is marked by a tap op whose index points into `taps` (appended
    here: (qualified name, module)). `error` is symbolic tracing's failure, for the message
    when this fails too.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    inputs = tensors((args, kwargs))
    slots = [id(v) for v in inputs]

    def call(*tensor_args):
        by_id = dict(zip(slots, tensor_args, strict=True))
        sub = fx.node.map_aggregate(
            (args, kwargs), lambda x: by_id.get(id(x), x.value) if isinstance(x, V) else x
        )
        return m(*sub[0], **sub[1])

    def tap(index):
        def hook(mod, i, o):
            return _tap(o, index) if isinstance(o, torch.Tensor) else o

        return hook

    hooks = []
    for sub_name, sub in m.named_modules():
        if sub_name:
            taps.append((join(name, sub_name), sub))
            hooks.append(sub.register_forward_hook(tap(len(taps) - 1)))
    try:
        gm = make_fx(call)(*[v.value for v in inputs])
    except Exception as e2:  # noqa: BLE001
        raise ConvlensError(
            f"cannot derive receptive fields through {name or type(m).__name__}: "
            f"torch.fx failed ({error.__class__.__name__}) and so did make_fx ({e2})"
        ) from None
    finally:
        for h in hooks:
            h.remove()
    placeholders = [node.target for node in gm.graph.nodes if node.op == "placeholder"]
    return gm, gm.graph, dict(zip(placeholders, inputs, strict=True))
