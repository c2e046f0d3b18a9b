"""Values flowing through a traced graph together with their receptive fields."""

from __future__ import annotations

import inspect

import torch
from torch import fx, nn


class V:
    """A value with its receptive field (a ReceptiveField, a tuple of them, or None)."""

    __slots__ = ("value", "rf")

    def __init__(self, value, rf=None):
        self.value, self.rf = value, rf


def values(a):
    """The plain values of an argument structure of V's."""
    return fx.node.map_aggregate(a, lambda x: x.value if isinstance(x, V) else x)


def tensors(a) -> list[V]:
    """The V's holding tensors in an argument structure, in order."""
    found: list[V] = []
    fx.node.map_aggregate(
        a,
        lambda x: (
            found.append(x) if isinstance(x, V) and isinstance(x.value, torch.Tensor) else None
        ),
    )
    return found


def pack(result) -> V:
    """An output structure of V's -> one V whose rf mirrors the structure."""
    if isinstance(result, V):
        return result
    if isinstance(result, (tuple, list)):
        parts = [pack(r) for r in result]
        return V(type(result)(p.value for p in parts), tuple(p.rf for p in parts))
    if isinstance(result, dict):
        return V({k: pack(v).value for k, v in result.items()})
    return V(result)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def get_attr(m: nn.Module, target: str):
    obj = m
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def bind(m: nn.Module, graph: fx.Graph, args, kwargs) -> dict:
    """Match the call's arguments to the traced graph's placeholders by name."""
    sig = inspect.signature(m.forward)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    out = {}
    for pname, val in bound.arguments.items():
        kind = sig.parameters[pname].kind
        if kind == inspect.Parameter.VAR_POSITIONAL:
            out[f"*{pname}"] = pack(tuple(val))
        elif kind == inspect.Parameter.VAR_KEYWORD:
            out[f"**{pname}"] = pack(dict(val))
        else:
            out[pname] = val if isinstance(val, V) else V(val)
    for node in graph.nodes:
        if node.op == "placeholder" and node.target not in out:
            out[node.target] = V(node.args[0] if node.args else None)
    return out


def lookup(env, a):
    """Replace fx nodes in an argument structure by their V's."""
    return fx.node.map_arg(a, lambda n: env[n])
