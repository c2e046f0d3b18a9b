"""Receptive fields from the layer stack: which input box each unit of each layer sees.

Every named module's output gets a `ReceptiveField`: per spatial axis the nominal
(jump, start, size) triple -- unit i covers input pixels [start + i*jump, ... + size), padding
included -- and the exact span of input pixels each position depends on (propagated position
by position, so a unit next to a border whose field reaches into padding, or into pixels an
unpadded strided layer dropped, gets exactly the pixels it can see).

Fields are propagated with torch.fx, one module level at a time, while the network runs on an
example input (the real tensors give every node's shape):

- convolutions and pooling (module or functional): kernel, stride, padding, dilation;
- explicit padding (nn.ZeroPad2d & co., F.pad) and spatial slicing `x[..., a:b, c:d]`;
- ops with several spatial inputs (residual adds, concatenation along channels): the union of
  the inputs' fields, so a residual block's output sees what either branch sees;
- element-wise ops (activations, batch norm, dropout): the field passes through;
- adaptive pooling: its bins; anything that removes the spatial axes (flatten, linear, global
  pooling): the whole input.

A module symbolic tracing cannot handle (Python control flow on shapes) is traced at the ATen
level by make_fx on the real input instead, with every submodule's output marked in the graph.
An op no rule covers that resamples its one spatial input (interpolation, transposed
convolution, pixel shuffle) is measured: gradients of each output row and column on a random
input say which input rows and columns it reads.

Notes: (1) An input broadcast from 1x1 to a larger map (the gate of a squeeze-and-excitation
block, a per-channel scale) is not treated as spatial: strictly such a gate makes every unit
depend on the whole image, but the unit's spatial pattern still comes from its local field,
which is what a patch should show. (2) Other size-changing ops with several spatial inputs make
the field unknown from there on. (3) Reflection and replication padding are treated like zero
padding.
"""

from __future__ import annotations

import inspect
import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from convlens.errors import ConvlensError

EMPTY = (1 << 40, -(1 << 40))  # an interval no input pixel is in (a position that is padding)


@dataclass(frozen=True, eq=False)
class Axis:
    """One spatial axis of a layer's output.

    The nominal field: unit i covers input coordinates [start + i*jump, ... + size), the
    textbook figure, padding included. `spans` (n, 2) is exact: the half-open interval of input
    pixels that unit i really depends on, from propagating every position through each layer
    (inside the image; positions that stem from padding contribute nothing, so near a border
    the span can be shorter than the nominal field clipped to the image).
    """

    jump: int
    start: int
    size: int
    spans: np.ndarray

    @staticmethod
    def identity(n: int) -> Axis:
        i = np.arange(n, dtype=np.int64)
        return Axis(1, 0, 1, np.stack([i, i + 1], 1))

    def window(self, k: int, stride: int, pad: int, dilation: int, n_out: int) -> Axis:
        """Conv/pool: output i reads input positions i*stride - pad + t*dilation, t < k."""
        taps = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :] * dilation
        return Axis(
            self.jump * stride,
            self.start - pad * self.jump,
            self.size + (k - 1) * dilation * self.jump,
            self._gather(taps),
        )

    def shift(self, offset: int, n_out: int) -> Axis:
        """Padding (offset < 0) or cropping (offset > 0): output i is input i + offset."""
        taps = np.arange(n_out)[:, None] + offset
        return Axis(self.jump, self.start + offset * self.jump, self.size, self._gather(taps))

    def bins(self, n_out: int) -> Axis:
        """Adaptive pooling: output i pools input [floor(i*n/m), ceil((i+1)*n/m))."""
        n = len(self.spans)
        i = np.arange(n_out)
        lo, hi = (i * n) // n_out, -((-(i + 1) * n) // n_out)
        width = int((hi - lo).max())
        taps = np.where(
            np.arange(width)[None, :] < (hi - lo)[:, None], lo[:, None] + np.arange(width), -1
        )
        jump = n // n_out if n % n_out == 0 else max(n // n_out, 1)
        return Axis(
            self.jump * jump, self.start, self.size + (width - 1) * self.jump, self._gather(taps)
        )

    def depend(self, dep: np.ndarray) -> Axis:
        """A measured op: output i depends on input positions j where dep[i, j] (bool).

        The exact spans follow; the nominal field is the linear fit of a resampling (jump may
        be fractional, e.g. 150 -> 64 pixels by interpolation).
        """
        width = max(int(dep.sum(1).max()), 1)
        order = np.argsort(~dep, axis=1, kind="stable")[:, :width]
        taps = np.where(np.take_along_axis(dep, order, 1), order, -1)
        rows = np.flatnonzero(dep.any(1))
        first = dep.argmax(1)
        last = dep.shape[1] - 1 - dep[:, ::-1].argmax(1)
        if len(rows) == 0:
            raise _Unknown("an op's output does not depend on its input")
        a0, a1 = first[rows[0]], first[rows[-1]]
        ratio = (a1 - a0) / (rows[-1] - rows[0]) if len(rows) > 1 else 1
        extent = int((last - first)[rows].max())
        jump = _num(self.jump * ratio)
        start = _num(self.start + (a0 - rows[0] * ratio) * self.jump)
        return Axis(jump, start, self.size + extent * self.jump, self._gather(taps))

    def _gather(self, taps: np.ndarray) -> np.ndarray:
        """Union, per output position, of the spans at the in-range taps."""
        n = len(self.spans)
        valid = (taps >= 0) & (taps < n)
        idx = np.clip(taps, 0, max(n - 1, 0))
        lo = np.where(valid, self.spans[idx, 0], EMPTY[0]).min(1)
        hi = np.where(valid, self.spans[idx, 1], EMPTY[1]).max(1)
        return np.stack([lo, hi], 1)


def _union_axis(axes: list[Axis]) -> Axis:
    if len({a.jump for a in axes}) != 1:
        raise _Unknown(f"branches with different strides meet ({sorted({a.jump for a in axes})})")
    start = min(a.start for a in axes)
    end = max(a.start + a.size for a in axes)
    spans = np.stack([a.spans for a in axes])
    exact = np.stack([spans[:, :, 0].min(0), spans[:, :, 1].max(0)], 1)
    return Axis(axes[0].jump, start, end - start, exact)


@dataclass(frozen=True, eq=False)
class ReceptiveField:
    """Receptive field of a layer's units in network-input pixels.

    `h`/`w` is None when the units see the whole input on that axis (after flatten, linear or
    global pooling). `unknown` holds the reason when the field could not be derived.
    """

    h: Axis | None
    w: Axis | None
    unknown: str | None = None

    @property
    def is_global(self) -> bool:
        return self.unknown is None and self.h is None and self.w is None

    def box(
        self, y: int, x: int, height: int, width: int, clip: bool = True
    ) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), half-open, of unit (y, x) in a height x width input.

        clip=True: exactly the input pixels the unit depends on (its gradient's support when
        no path cancels). clip=False: the nominal field, padding included, possibly running
        past the image edges (the same size for every unit of the layer).
        """
        if self.unknown:
            raise ConvlensError(f"receptive field unknown: {self.unknown}")
        top, bottom = _span(self.h, y, height, clip)
        left, right = _span(self.w, x, width, clip)
        return top, left, bottom, right

    def describe(self) -> str:
        if self.unknown:
            return "unknown"
        if self.is_global:
            return "whole input"
        h = "all" if self.h is None else f"{self.h.size:.4g}"
        w = "all" if self.w is None else f"{self.w.size:.4g}"
        jh = "-" if self.h is None else f"{self.h.jump:.4g}"
        jw = "-" if self.w is None else f"{self.w.jump:.4g}"
        size = h if h == w else f"{h}x{w}"
        jump = jh if jh == jw else f"{jh}x{jw}"
        return f"{size} px, stride {jump}"

    def to_json(self) -> dict:
        if self.unknown:
            return {"unknown": self.unknown}
        out = {}
        for name, ax in (("h", self.h), ("w", self.w)):
            out[name] = (
                None if ax is None else {"jump": ax.jump, "start": ax.start, "size": ax.size}
            )
        return out


def _span(ax: Axis | None, i: int, n: int, exact: bool) -> tuple[int, int]:
    if ax is None:
        return 0, n
    if exact:
        lo, hi = (int(v) for v in ax.spans[i])
        return (lo, hi) if lo < hi else (0, 0)
    lo = ax.start + i * ax.jump
    return math.floor(lo), math.ceil(lo + ax.size)


def _num(v: float) -> int | float:
    """An integer where the value is one (jumps and starts are integers unless resampled)."""
    return int(round(v)) if abs(v - round(v)) < 1e-9 else float(v)


GLOBAL = ReceptiveField(None, None)


class _Unknown(Exception):
    pass


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) not in (1, 2):
            raise _Unknown(f"bad 2-D parameter {v}")
        return int(v[0]), int(v[-1])
    return int(v), int(v)


def _spatial(t) -> tuple[int, int] | None:
    return tuple(t.shape[-2:]) if isinstance(t, torch.Tensor) and t.dim() == 4 else None


def _axes(rf: ReceptiveField, fn_h, fn_w) -> ReceptiveField:
    return ReceptiveField(
        None if rf.h is None else fn_h(rf.h), None if rf.w is None else fn_w(rf.w)
    )


def _window(rf: ReceptiveField, out, k, stride, pad, dilation) -> ReceptiveField:
    """Conv/pool window on both axes; `pad` is the (top, left) padding."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(v) for v in (k, stride, pad, dilation))
    oh, ow = _spatial(out)
    return _axes(rf, lambda a: a.window(kh, sh, ph, dh, oh), lambda a: a.window(kw, sw, pw, dw, ow))


def _same_padding(k, dilation) -> tuple[int, int]:
    # torch pads (total // 2) before and the rest after for padding="same".
    (kh, kw), (dh, dw) = _pair(k), _pair(dilation)
    return dh * (kh - 1) // 2, dw * (kw - 1) // 2


def _conv_padding(padding, k, dilation):
    if padding == "same":
        return _same_padding(k, dilation)
    if padding == "valid":
        return 0, 0
    return _pair(padding)


def _pad(rf: ReceptiveField, out, pad: tuple[int, ...]) -> ReceptiveField:
    """F.pad-style (left, right, top, bottom, ...) padding: new positions see nothing."""
    left = int(pad[0]) if len(pad) >= 2 else 0
    top = int(pad[2]) if len(pad) >= 4 else 0
    oh, ow = _spatial(out)
    return _axes(rf, lambda a: a.shift(-top, oh), lambda a: a.shift(-left, ow))


def _crop(rf: ReceptiveField, out, top: int, left: int) -> ReceptiveField:
    oh, ow = _spatial(out)
    return _axes(rf, lambda a: a.shift(top, oh), lambda a: a.shift(left, ow))


def _generic(inputs: list[tuple[torch.Tensor, ReceptiveField]], out) -> ReceptiveField | None:
    """Ops without a geometric rule: union of the fields of the inputs at the output's size."""
    known = [(t, rf) for t, rf in inputs if isinstance(rf, ReceptiveField)]
    if not known or not isinstance(out, torch.Tensor):
        return None
    for _, rf in known:
        if rf.unknown:
            return rf
    out_hw = _spatial(out)
    if out_hw is None:
        return GLOBAL  # spatial axes gone (flatten, linear, mean over H, W)
    # Inputs at the output's size are the spatial sources; a 1x1 input broadcast onto a larger
    # map is a per-channel gate (see the module docstring) and does not count.
    rfs = [rf for t, rf in known if _spatial(t) == out_hw]
    if not rfs:
        if out_hw == (1, 1):
            return GLOBAL  # a reduction over the spatial axes
        sizes = ", ".join(sorted({str(_spatial(t)) for t, _ in known}))
        raise _Unknown(f"an op changes the spatial size from {sizes} to {out_hw}")
    if any(rf.is_global for rf in rfs):
        return GLOBAL
    return ReceptiveField(
        None if rfs[0].h is None else _union_axis([rf.h for rf in rfs]),
        None if rfs[0].w is None else _union_axis([rf.w for rf in rfs]),
    )


def _adaptive(rf: ReceptiveField, out) -> ReceptiveField:
    oh, ow = _spatial(out)
    if (oh, ow) == (1, 1):
        return GLOBAL
    return _axes(rf, lambda a: a.bins(oh), lambda a: a.bins(ow))


# Leaf modules with a geometric rule; every other torch.nn leaf is element-wise or global.
def _module_rule(m: nn.Module, rf: ReceptiveField, inp, out) -> ReceptiveField | None:
    if isinstance(m, nn.Conv2d):
        pad = _conv_padding(m.padding, m.kernel_size, m.dilation)
        return _window(rf, out, m.kernel_size, m.stride, pad, m.dilation)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)):
        stride = m.stride or m.kernel_size
        pad, dilation = getattr(m, "padding", 0), getattr(m, "dilation", 1)
        return _window(rf, out, m.kernel_size, stride, pad, dilation)
    if isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)):
        return _pad(rf, out, tuple(m.padding))
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive(rf, out)
    if isinstance(m, (nn.ConvTranspose2d, nn.Upsample, nn.PixelShuffle, nn.Fold, nn.Unfold)):
        raise _Unknown(f"no receptive-field rule for {type(m).__name__}")
    return None  # generic


def _arg(args, kwargs, i, name, default):
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def _function_rule(fn, args, kwargs, rf: ReceptiveField, out) -> ReceptiveField | None:
    if fn is F.conv2d:
        weight = _arg(args, kwargs, 1, "weight", None)
        k = tuple(weight.shape[-2:])
        dilation = _arg(args, kwargs, 5, "dilation", 1)
        pad = _conv_padding(_arg(args, kwargs, 4, "padding", 0), k, dilation)
        return _window(rf, out, k, _arg(args, kwargs, 3, "stride", 1), pad, dilation)
    if fn in (F.max_pool2d, F.avg_pool2d, torch.max_pool2d):
        k = _arg(args, kwargs, 1, "kernel_size", None)
        stride = _arg(args, kwargs, 2, "stride", None) or k
        pad = _arg(args, kwargs, 3, "padding", 0)
        dilation = 1 if fn is F.avg_pool2d else _arg(args, kwargs, 4, "dilation", 1)
        return _window(rf, out, k, stride, pad, dilation)
    if fn is F.pad:
        return _pad(rf, out, tuple(_arg(args, kwargs, 1, "pad", ())))
    if fn in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        return _adaptive(rf, out)
    if fn in (F.interpolate, F.conv_transpose2d, F.pixel_shuffle, F.unfold, F.fold):
        raise _Unknown(f"no receptive-field rule for {fn.__name__}")
    if fn is operator.getitem and isinstance(args[0], torch.Tensor):
        return _slice(rf, args[0], args[1], out)
    if isinstance(fn, torch._ops.OpOverload):
        return _aten_rule(fn, args, rf, out)
    return None


_aten = torch.ops.aten
_ATEN_PADS = (
    _aten.constant_pad_nd.default,
    _aten.reflection_pad2d.default,
    _aten.replication_pad2d.default,
)
_ATEN_MAX_POOLS = (_aten.max_pool2d_with_indices.default, _aten.max_pool2d.default)
_ATEN_ADAPTIVE = (_aten._adaptive_avg_pool2d.default, _aten.adaptive_max_pool2d.default)


def _aten_rule(fn, args, rf: ReceptiveField, out) -> ReceptiveField | None:
    """Rules for the ATen ops of a make_fx graph (the fallback for modules fx cannot trace)."""
    n = len(args)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if fn is _aten.convolution.default:
        if args[6]:
            raise _Unknown("no receptive-field rule for a transposed convolution")
        return _window(rf, out, tuple(args[1].shape[-2:]), args[3], args[4], args[5])
    if fn in _ATEN_PADS:
        return _pad(rf, out, tuple(args[1]))
    if fn in _ATEN_MAX_POOLS or fn is _aten.avg_pool2d.default:
        k = args[1]
        stride = args[2] if n > 2 and args[2] else k
        pad = args[3] if n > 3 else 0
        dilation = args[4] if n > 4 and fn in _ATEN_MAX_POOLS else 1
        return _window(rf, out, k, stride, pad, dilation)
    if fn in _ATEN_ADAPTIVE:
        return _adaptive(rf, out)
    if fn is _aten.slice.Tensor and args[0].dim() == 4:
        dim = (args[1] if n > 1 else 0) % 4
        if (args[4] if n > 4 else 1) != 1:
            return None
        if dim < 2:
            return rf
        start = (args[2] if n > 2 and args[2] is not None else 0) or 0
        size = args[0].shape[dim]
        start = max(start + size, 0) if start < 0 else min(start, size)
        return _crop(rf, out, start if dim == 2 else 0, start if dim == 3 else 0)
    return None


def _slice(rf: ReceptiveField, t: torch.Tensor, index, out) -> ReceptiveField | None:
    """x[..., a:b, c:d]: cropping moves the field; anything fancier falls to the generic rule."""
    if t.dim() != 4 or not isinstance(index, tuple):
        return None
    if any(i is Ellipsis for i in index):
        pos = index.index(Ellipsis)
        index = index[:pos] + (slice(None),) * (4 - len(index) + 1) + index[pos + 1 :]
    index = index + (slice(None),) * (4 - len(index))
    if any(not isinstance(s, slice) or s.step not in (None, 1) for s in index):
        return None
    starts = []
    for dim in (2, 3):
        start, size = index[dim].start or 0, t.shape[dim]
        starts.append(max(start + size, 0) if start < 0 else min(start, size))
    return _crop(rf, out, *starts)


# ---------------------------------------------------------------------------------------------
# Propagation


@dataclass
class LayerInfo:
    """One named module's output: type, shape (without batch) and receptive field."""

    name: str
    kind: str
    shape: tuple[int, ...]
    rf: ReceptiveField


class _OneLevel(fx.Tracer):
    """Trace a module's own forward; every child module stays a call."""

    def __init__(self, root: nn.Module):
        super().__init__()
        self.root_module = root

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return m is not self.root_module


def _is_leaf(m: nn.Module) -> bool:
    """Modules interpreted by rule rather than traced: childless torch.nn built-ins."""
    return type(m).__module__.startswith("torch.nn") and not any(True for _ in m.children())


class _V:
    """A value flowing through the graph together with its receptive field (or a tuple of them)."""

    __slots__ = ("value", "rf")

    def __init__(self, value, rf=None):
        self.value, self.rf = value, rf


def _values(a):
    return fx.node.map_aggregate(a, lambda x: x.value if isinstance(x, _V) else x)


def _tensors(a) -> list[_V]:
    found: list[_V] = []
    fx.node.map_aggregate(
        a,
        lambda x: (
            found.append(x) if isinstance(x, _V) and isinstance(x.value, torch.Tensor) else None
        ),
    )
    return found


@torch.library.custom_op("convlens::tap", mutates_args=())
def _tap(x: torch.Tensor, index: int) -> torch.Tensor:
    """Identity marking a module's output in an ATen graph (see _Propagator._make_fx)."""
    return x.clone()


@_tap.register_fake
def _(x, index):
    return torch.empty_like(x)


_TAP = torch.ops.convlens.tap.default


class _Propagator:
    def __init__(self):
        self.layers: dict[str, LayerInfo] = {}
        self.taps: list[tuple[str, nn.Module]] = []  # make_fx taps: index -> (name, module)

    def run_module(self, m: nn.Module, name: str, args: tuple, kwargs: dict) -> _V:
        out = self._leaf(m, args, kwargs) if _is_leaf(m) else self._traced(m, name, args, kwargs)
        self._record(name, m, out.value, out.rf)
        return out

    def _record(self, name, m, value, rf) -> None:
        if name and isinstance(value, torch.Tensor) and name not in self.layers:
            if not isinstance(rf, ReceptiveField):
                rf = ReceptiveField(None, None, unknown="not derived from the input")
            self.layers[name] = LayerInfo(name, type(m).__name__, tuple(value.shape[1:]), rf)

    def _leaf(self, m, args, kwargs) -> _V:
        values, kvalues = _values(args), _values(kwargs)
        out = m(*values, **kvalues)
        inputs = _tensors((args, kwargs))
        rerun = _rerun(lambda a, kw: m(*a, **kw), (args, kwargs), inputs)
        return _V(out, _apply(lambda v: _module_rule(m, v.rf, v.value, out), inputs, out, rerun))

    def _call(self, node: fx.Node, env) -> _V:
        a, kw = _lookup(env, node.args), _lookup(env, node.kwargs)
        values, kvalues = _values(a), _values(kw)
        inputs = _tensors((a, kw))
        if node.op == "call_method":
            method = node.target
            out = getattr(values[0], method)(*values[1:], **kvalues)
            rerun = _rerun(lambda p, k: getattr(p[0], method)(*p[1:], **k), (a, kw), inputs)
            return _V(out, _apply(lambda v: None, inputs, out, rerun))
        fn = node.target
        if fn is _TAP:  # a named module's output inside a make_fx graph
            qualname, module = self.taps[values[1]]
            self._record(qualname, module, values[0], a[0].rf)
            return a[0]
        out = fn(*values, **kvalues)
        if fn is operator.getitem and isinstance(a[0], _V) and isinstance(a[0].rf, tuple):
            return _V(out, a[0].rf[values[1]])
        rule = lambda v: _function_rule(fn, values, kvalues, v.rf, out)  # noqa: E731
        rerun = _rerun(lambda p, k: fn(*p, **k), (a, kw), inputs)
        return _V(out, _apply(rule, inputs, out, rerun))

    def _traced(self, m, name, args, kwargs) -> _V:
        try:
            graph = _OneLevel(m).trace(m)
            root, bound = m, _bind(m, graph, args, kwargs)
        except Exception as e:  # noqa: BLE001 - any tracing failure means "use the fallback"
            root, graph, bound = self._make_fx(m, name, args, kwargs, e)
        env: dict[fx.Node, object] = {}
        for node in graph.nodes:
            if node.op == "placeholder":
                env[node] = bound[node.target]
            elif node.op == "get_attr":
                env[node] = _V(_get_attr(root, node.target))
            elif node.op == "call_module":
                sub = root.get_submodule(node.target)
                a, kw = _lookup(env, node.args), _lookup(env, node.kwargs)
                env[node] = self.run_module(sub, _join(name, node.target), a, kw)
            elif node.op in ("call_function", "call_method"):
                env[node] = self._call(node, env)
            elif node.op == "output":
                return _pack(_lookup(env, node.args[0]))
        raise AssertionError("graph without output")

    def _make_fx(self, m, name, args, kwargs, error):
        """Fallback for a module symbolic tracing cannot handle (e.g. Python control flow on
        shapes): trace it at the ATen level on the real input, where every shape is concrete.
        Forward hooks wrap each submodule's output in an identity `convlens::tap` op, so the
        flat graph still says where every named module's output is."""
        from torch.fx.experimental.proxy_tensor import make_fx

        inputs = _tensors((args, kwargs))
        slots = [id(v) for v in inputs]

        def call(*tensors):
            by_id = dict(zip(slots, tensors, strict=True))
            sub = fx.node.map_aggregate(
                (args, kwargs), lambda x: by_id.get(id(x), x.value) if isinstance(x, _V) else x
            )
            return m(*sub[0], **sub[1])

        def tap(index):
            def hook(mod, i, o):
                return _tap(o, index) if isinstance(o, torch.Tensor) else o

            return hook

        hooks = []
        for sub_name, sub in m.named_modules():
            if sub_name:
                self.taps.append((_join(name, sub_name), sub))
                hooks.append(sub.register_forward_hook(tap(len(self.taps) - 1)))
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
        placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
        return gm, gm.graph, dict(zip(placeholders, inputs, strict=True))


def _apply(rule, inputs: list[_V], out, rerun=None) -> ReceptiveField | tuple | None:
    """The geometric rule for the first input with a field, else the generic union, else (for
    an op with one spatial input that resamples it) the dependence measured by `_probe`.

    Ops returning several tensors (max pool with indices, batch norm) get one field per tensor.
    `rerun(x)` calls the op again with x in place of the first input.
    """
    first = next((v for v in inputs if isinstance(v.rf, ReceptiveField)), None)
    if first is None:
        return None
    main = out[0] if isinstance(out, (tuple, list)) and out else out
    try:
        got = rule(first) if first.rf.unknown is None else None
        if got is None:
            got = _generic([(v.value, v.rf) for v in inputs], main)
    except _Unknown as e:
        got = ReceptiveField(None, None, unknown=str(e))
        spatial = [v for v in inputs if _spatial(v.value) and isinstance(v.rf, ReceptiveField)]
        if rerun is not None and spatial == [first] and _spatial(main) and not first.rf.unknown:
            got = _probe(rerun, first, main) or got
    if isinstance(out, (tuple, list)):
        return tuple(
            got if isinstance(o, torch.Tensor) and _spatial(o) == _spatial(main) else None
            for o in out
        )
    return got


def _probe(rerun, inp: _V, out: torch.Tensor) -> ReceptiveField | None:
    """Measure which input rows (columns) each output row (column) depends on, by gradients of
    a random projection of that row on a random input; None when the op resists it."""
    x0 = inp.value
    try:
        with torch.enable_grad():
            x = torch.rand(x0.shape[:2] + x0.shape[2:], dtype=x0.dtype, device=x0.device)
            x = x.add_(0.5).requires_grad_(True)
            y = rerun(x)
            y = y[0] if isinstance(y, (tuple, list)) else y
            if not isinstance(y, torch.Tensor) or y.shape != out.shape or not y.requires_grad:
                return None
            r = torch.rand_like(y).add_(0.5)
            deps = []
            for axis in (2, 3):
                rows = []
                for i in range(y.shape[axis]):
                    (g,) = torch.autograd.grad(
                        (y.narrow(axis, i, 1) * r.narrow(axis, i, 1)).sum(), x, retain_graph=True
                    )
                    other = 3 if axis == 2 else 2
                    rows.append((g.abs().sum((0, 1, other)) > 0).cpu().numpy())
                deps.append(np.stack(rows))
    except Exception:  # noqa: BLE001 - an op that cannot be re-run or differentiated
        return None
    rf = inp.rf
    try:
        return ReceptiveField(
            None if rf.h is None else rf.h.depend(deps[0]),
            None if rf.w is None else rf.w.depend(deps[1]),
        )
    except _Unknown:
        return None


def _rerun(call, args_kwargs, inputs: list[_V]):
    """f(x): the same call with x in place of the first input that has a field."""
    first = next((v for v in inputs if isinstance(v.rf, ReceptiveField)), None)
    if first is None:
        return None

    def f(x):
        a, kw = fx.node.map_aggregate(
            args_kwargs, lambda v: (x if v is first else v.value) if isinstance(v, _V) else v
        )
        return call(a, kw)

    return f


def _pack(result) -> _V:
    """An output structure of _V's -> one _V whose rf mirrors the structure."""
    if isinstance(result, _V):
        return result
    if isinstance(result, (tuple, list)):
        parts = [_pack(r) for r in result]
        return _V(type(result)(p.value for p in parts), tuple(p.rf for p in parts))
    if isinstance(result, dict):
        return _V({k: _pack(v).value for k, v in result.items()})
    return _V(result)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _get_attr(m: nn.Module, target: str):
    obj = m
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _bind(m: nn.Module, graph: fx.Graph, args, kwargs) -> dict:
    """Match the call's arguments to the traced graph's placeholders by name."""
    sig = inspect.signature(m.forward)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    out = {}
    for pname, val in bound.arguments.items():
        kind = sig.parameters[pname].kind
        if kind == inspect.Parameter.VAR_POSITIONAL:
            out[f"*{pname}"] = _pack(tuple(val))
        elif kind == inspect.Parameter.VAR_KEYWORD:
            out[f"**{pname}"] = _pack(dict(val))
        else:
            out[pname] = val if isinstance(val, _V) else _V(val)
    for node in graph.nodes:
        if node.op == "placeholder" and node.target not in out:
            out[node.target] = _V(node.args[0] if node.args else None)
    return out


def _lookup(env, a):
    """Replace fx nodes in an argument structure by their _V's."""
    return fx.node.map_arg(a, lambda n: env[n])


def analyze(
    model: nn.Module, input_size: tuple[int, int], channels: int = 3
) -> dict[str, LayerInfo]:
    """Output shape and receptive field of every named module, for one (H, W) input size.

    Runs the model once on a zero batch of one image (on the model's device, no gradients).
    The returned dict is in execution order.
    """
    h, w = input_size
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = torch.zeros(1, channels, h, w, device=device, dtype=dtype)
    prop = _Propagator()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            identity = ReceptiveField(Axis.identity(h), Axis.identity(w))
            prop.run_module(model, "", (_V(x, identity),), {})
    finally:
        model.train(was_training)
    return prop.layers
