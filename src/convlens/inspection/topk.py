"""Bounded per-unit storage for a streaming pass: top-k buffers, running statistics, and the
network inputs still in some top-k.

For every unit (channel) of a layer the pass keeps a top-k buffer of (activation, item id,
position) and running sums for the mean: memory depends on the number of units and k, never
on the number of images. Ties rank the earlier item (then the earlier position) first.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from convlens.errors import ConvlensError

_UNITS_HELP = "use a range like 0:16, a list like 3,7,12, or 'all'"


def parse_unit_spec(text: str) -> slice | list[int] | None:
    """The syntax of a unit list: '0:16' -> slice, '3,7,12' / '5' -> list, 'all' -> None.

    Checked against a layer's size later (parse_units); raises ConvlensError on bad syntax.
    """
    spec = text.strip()
    if spec == "all":
        return None
    try:
        if ":" in spec:
            parts = [int(p) if p.strip() else None for p in spec.split(":")]
            if len(parts) > 3 or parts[2:] == [0]:
                raise ValueError
            return slice(*parts)
        units = [int(p) for p in spec.split(",") if p.strip()]
    except ValueError:
        raise ConvlensError(f"bad unit list {text!r}: {_UNITS_HELP}") from None
    if not units:
        raise ConvlensError(f"bad unit list {text!r}: {_UNITS_HELP}")
    return units


def parse_units(spec: str | Sequence[int] | slice | None, n: int, layer: str = "") -> list[int]:
    """'0:16', '3,7,12', '5', 'all' (or a slice / list) -> channel indices, checked against n."""
    where = f" of layer {layer!r}" if layer else ""
    given = spec
    if isinstance(spec, str):
        spec = parse_unit_spec(spec)
    if spec is None:
        return list(range(n))
    units = list(range(n))[spec] if isinstance(spec, slice) else [int(u) for u in spec]
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ConvlensError(f"unit {bad[0]} out of range{where}: it has {n} units (0..{n - 1})")
    if not units:
        raise ConvlensError(f"unit list {given!r} selects no unit{where} ({n} units)")
    return units


class TopK:
    """Per-unit bounded top-k of (value, id, position), merged batch by batch on the device.

    The buffer never holds more than k entries per unit (plus one batch while merging).
    """

    def __init__(self, n_units: int, k: int, device: torch.device | str = "cpu"):
        self.k = k
        self.values = torch.empty(n_units, 0, device=device)
        self.ids = torch.empty(n_units, 0, dtype=torch.long, device=device)
        self.positions = torch.empty(n_units, 0, dtype=torch.long, device=device)

    def push(self, values: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor) -> None:
        """Candidates (U, M), in stream order (earlier id, then earlier position, first)."""
        v = torch.cat([self.values, values.float()], 1)
        order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = v.gather(1, order)
        self.ids = torch.cat([self.ids, ids], 1).gather(1, order)
        self.positions = torch.cat([self.positions, positions], 1).gather(1, order)


@dataclass
class LayerTop:
    """One layer's result: unit indices, top-k per unit and per-unit activation statistics."""

    layer: str
    units: list[int]
    shape: tuple[int, ...]  # (C, H, W) of the layer output, (C, 1, 1) for a vector
    values: np.ndarray  # (U, k) descending
    ids: np.ndarray  # (U, k) item ids
    positions: np.ndarray  # (U, k, 2) (y, x) in the layer's output map
    mean: np.ndarray  # (U,) mean over every image and position
    max: np.ndarray  # (U,)

    @property
    def dead(self) -> list[int]:
        """Units that never had a positive activation on any image."""
        return [u for u, m in zip(self.units, self.max, strict=True) if not m > 0]


class UnitStats:
    """One layer's running state in a pass: top-k buffer, sum, count and maximum per unit."""

    def __init__(self, units: list[int], shape: tuple[int, int, int], k: int, device):
        self.units = units
        self.shape = shape
        self.index = torch.tensor(units, device=device)
        self.topk = TopK(len(units), k, device)
        self.sum = torch.zeros(len(units), dtype=torch.float64, device=device)
        self.max = torch.full((len(units),), -torch.inf, device=device)
        self.count = 0

    def add(self, out: torch.Tensor, ids: torch.Tensor, per_image: bool) -> None:
        """A batch of layer outputs (B, C, H, W) for the items `ids` (B,).

        per_image: a unit's candidate from one item is its strongest position there (so the
        top patches come from different images, as in Zeiler & Fergus); else every position.
        """
        b, _, h, w = out.shape
        u = len(self.units)
        a = out.index_select(1, self.index).flatten(2).float()  # (B, U, HW)
        self.sum += a.sum((0, 2), dtype=torch.float64)
        self.count += b * h * w
        if per_image:
            vals, pos = a.max(2)  # (B, U): first maximum on ties
            self.max = torch.maximum(self.max, vals.max(0).values)
            self.topk.push(vals.T, ids[None, :].expand(u, b), pos.T)
        else:
            self.max = torch.maximum(self.max, a.amax((0, 2)))
            vals = a.permute(1, 0, 2).reshape(u, b * h * w)
            cand_ids = ids[:, None].expand(b, h * w).reshape(1, -1).expand(u, -1)
            pos = torch.arange(h * w, device=out.device).repeat(b)[None].expand(u, -1)
            self.topk.push(vals, cand_ids, pos)

    def result(self, layer: str) -> LayerTop:
        pos = self.topk.positions.cpu().numpy()
        w = self.shape[2]
        return LayerTop(
            layer=layer,
            units=self.units,
            shape=self.shape,
            values=self.topk.values.cpu().numpy(),
            ids=self.topk.ids.cpu().numpy(),
            positions=np.stack([pos // w, pos % w], -1),
            mean=(self.sum / self.count).cpu().numpy(),
            max=self.max.cpu().numpy(),
        )


class ViewPool:
    """The network inputs of the items in some top-k, in reused fixed slots.

    Each kept input is copied into a slot (a view may share memory with all the faces of its
    image); slots of items that fell out of every top-k are reused. Slots come in blocks of
    anonymous memory maps, outside the C heap: hundreds of small arrays that stay alive among
    the network's large temporaries would pin the heap and make RSS creep pass after pass.
    """

    BLOCK = 64

    def __init__(self):
        self.slots: list[np.ndarray] = []
        self.where: dict[int, int] = {}  # item id -> slot
        self.free: list[int] = []

    def _grow(self, like: np.ndarray) -> None:
        buf = mmap.mmap(-1, self.BLOCK * like.nbytes)
        block = np.frombuffer(buf, dtype=like.dtype).reshape(self.BLOCK, *like.shape)
        self.free.extend(range(len(self.slots) + self.BLOCK - 1, len(self.slots) - 1, -1))
        self.slots.extend(block)

    def update(self, live_ids: list[int], ids: list[int], views: list[np.ndarray]) -> None:
        live = set(live_ids)
        for i in [i for i in self.where if i not in live]:
            self.free.append(self.where.pop(i))
        for i, v in zip(ids, views, strict=True):
            if i in live and i not in self.where:
                if not self.free or self.slots[self.free[-1]].shape != v.shape:
                    self._grow(v)
                slot = self.free.pop()
                np.copyto(self.slots[slot], v)
                self.where[i] = slot

    def views(self) -> dict[int, np.ndarray]:
        return {i: self.slots[s] for i, s in self.where.items()}
