"""Propagating fields through a network, one module level at a time, on a real input.

Each module's own forward is traced by torch.fx with every child module kept as a call, so
the walk recurses into children and records every named module's output; childless torch.nn
built-ins are interpreted by rule (rules.py), and a module symbolic tracing cannot handle is
traced at the ATen level instead (aten.py).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from convlens.inspection.receptive.aten import TAP, aten_rule, trace_aten
from convlens.inspection.receptive.axis import Unknown
from convlens.inspection.receptive.field import ReceptiveField
from convlens.inspection.receptive.rules import function_rule, generic, module_rule, spatial
from convlens.inspection.receptive.values import (
    V,
    bind,
    get_attr,
    join,
    lookup,
    pack,
    tensors,
    values,
)


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


class Propagator:
    """Runs a network on V's and records every named module's LayerInfo, in execution order."""

    def __init__(self, ndim: int):
        self.ndim = ndim  # spatial axes of the network input
        self.layers: dict[str, LayerInfo] = {}
        self.taps: list[tuple[str, nn.Module]] = []  # ATen taps: index -> (name, module)

    def run_module(self, m: nn.Module, name: str, args: tuple, kwargs: dict) -> V:
        out = self._leaf(m, args, kwargs) if _is_leaf(m) else self._traced(m, name, args, kwargs)
        self._record(name, m, out.value, out.rf)
        return out

    def _record(self, name, m, value, rf) -> None:
        if name and isinstance(value, torch.Tensor) and name not in self.layers:
            if not isinstance(rf, ReceptiveField):
                rf = ReceptiveField.failed(self.ndim, "not derived from the input")
            self.layers[name] = LayerInfo(name, type(m).__name__, tuple(value.shape[1:]), rf)

    def _leaf(self, m, args, kwargs) -> V:
        out = m(*values(args), **values(kwargs))
        inputs = tensors((args, kwargs))
        rerun = _rerun(lambda a, kw: m(*a, **kw), (args, kwargs), inputs)
        return V(out, _apply(lambda v: module_rule(m, v.rf, out), inputs, out, rerun))

    def _call(self, node: fx.Node, env) -> V:
        a, kw = lookup(env, node.args), lookup(env, node.kwargs)
        plain, kplain = values(a), values(kw)
        inputs = tensors((a, kw))
        if node.op == "call_method":
            method = node.target
            out = getattr(plain[0], method)(*plain[1:], **kplain)
            rerun = _rerun(lambda p, k: getattr(p[0], method)(*p[1:], **k), (a, kw), inputs)
            return V(out, _apply(lambda v: None, inputs, out, rerun))
        fn = node.target
        if fn is TAP:  # a named module's output inside an ATen graph
            qualname, module = self.taps[plain[1]]
            self._record(qualname, module, plain[0], a[0].rf)
            return a[0]
        out = fn(*plain, **kplain)
        if fn is operator.getitem and isinstance(a[0], V) and isinstance(a[0].rf, tuple):
            return V(out, a[0].rf[plain[1]])
        by_rule = aten_rule if isinstance(fn, torch._ops.OpOverload) else function_rule
        rule = lambda v: by_rule(fn, plain, kplain, v.rf, out)  # noqa: E731
        rerun = _rerun(lambda p, k: fn(*p, **k), (a, kw), inputs)
        return V(out, _apply(rule, inputs, out, rerun))

    def _traced(self, m, name, args, kwargs) -> V:
        try:
            graph = _OneLevel(m).trace(m)
            root, bound = m, bind(m, graph, args, kwargs)
        except Exception as e:  # noqa: BLE001 - any tracing failure means "use the fallback"
            root, graph, bound = trace_aten(m, name, args, kwargs, e, self.taps)
        env: dict[fx.Node, object] = {}
        for node in graph.nodes:
            if node.op == "placeholder":
                env[node] = bound[node.target]
            elif node.op == "get_attr":
                env[node] = V(get_attr(root, node.target))
            elif node.op == "call_module":
                sub = root.get_submodule(node.target)
                a, kw = lookup(env, node.args), lookup(env, node.kwargs)
                env[node] = self.run_module(sub, join(name, node.target), a, kw)
            elif node.op in ("call_function", "call_method"):
                env[node] = self._call(node, env)
            elif node.op == "output":
                return pack(lookup(env, node.args[0]))
        raise AssertionError("graph without output")


def _apply(rule, inputs: list[V], out, rerun=None) -> ReceptiveField | tuple | None:
    """The geometric rule for the first input with a field, else the generic union, else (for
    an op with one spatial input that resamples it) the dependence measured by `_probe`.

    Ops returning several tensors (max pool with indices, batch norm) get one field per tensor.
    `rerun(x)` calls the op again with x in place of the first input.
    """
    first = next((v for v in inputs if isinstance(v.rf, ReceptiveField)), None)
    if first is None:
        return None
    n = first.rf.ndim
    main = out[0] if isinstance(out, (tuple, list)) and out else out
    try:
        got = rule(first) if first.rf.unknown is None else None
        if got is None:
            got = generic([(v.value, v.rf) for v in inputs], main)
    except Unknown as e:
        got = ReceptiveField.failed(n, str(e))
        spatial_inputs = [
            v
            for v in inputs
            if spatial(v.value, n) is not None and isinstance(v.rf, ReceptiveField)
        ]
        resampled = spatial(main, n) is not None and not first.rf.unknown
        if rerun is not None and spatial_inputs == [first] and resampled:
            got = _probe(rerun, first, main) or got
    if isinstance(out, (tuple, list)):
        return tuple(
            got if isinstance(o, torch.Tensor) and spatial(o, n) == spatial(main, n) else None
            for o in out
        )
    return got


def _probe(rerun, inp: V, out: torch.Tensor) -> ReceptiveField | None:
    """Measure which input positions along each axis each output position along it depends
    on, by gradients of a random projection of that output slice on a random input; None when
    the op resists it."""
    x0 = inp.value
    try:
        with torch.enable_grad():
            x = torch.rand(x0.shape, dtype=x0.dtype, device=x0.device)
            x = x.add_(0.5).requires_grad_(True)
            y = rerun(x)
            y = y[0] if isinstance(y, (tuple, list)) else y
            if not isinstance(y, torch.Tensor) or y.shape != out.shape or not y.requires_grad:
                return None
            r = torch.rand_like(y).add_(0.5)
            deps = [_dependence(x, y, r, axis) for axis in range(2, y.dim())]
    except Exception:  # noqa: BLE001 - an op that cannot be re-run or differentiated
        return None
    try:
        return inp.rf.map(lambda i, a: a.depend(deps[i]))
    except Unknown:
        return None


def _dependence(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, axis: int) -> np.ndarray:
    """(output positions, input positions) bool along `axis`: which inputs each output reads."""
    others = tuple(d for d in range(x.dim()) if d != axis)
    rows = []
    for i in range(y.shape[axis]):
        (g,) = torch.autograd.grad(
            (y.narrow(axis, i, 1) * r.narrow(axis, i, 1)).sum(), x, retain_graph=True
        )
        rows.append((g.abs().sum(others) > 0).cpu().numpy())
    return np.stack(rows)


def _rerun(call, args_kwargs, inputs: list[V]):
    """f(x): the same call with x in place of the first input that has a field."""
    first = next((v for v in inputs if isinstance(v.rf, ReceptiveField)), None)
    if first is None:
        return None

    def f(x):
        a, kw = fx.node.map_aggregate(
            args_kwargs, lambda v: (x if v is first else v.value) if isinstance(v, V) else v
        )
        return call(a, kw)

    return f
