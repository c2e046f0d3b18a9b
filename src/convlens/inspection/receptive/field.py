"""A layer's receptive field: one Axis per spatial axis, and the input boxes it gives."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from convlens.errors import ConvlensError
from convlens.inspection.receptive.axis import Axis

# JSON names of the last spatial axes (depth, height, width); longer fields number theirs.
_AXIS_NAMES = ("d", "h", "w")


@dataclass(frozen=True, eq=False)
class ReceptiveField:
    """Receptive field of a layer's units in network-input pixels, one entry per spatial axis
    (height and width for images).

    An axis is None when the units see the whole input along it (after flatten, linear or
    global pooling). `unknown` holds the reason when the field could not be derived.
    """

    axes: tuple[Axis | None, ...]
    unknown: str | None = None

    @staticmethod
    def identity(size: Sequence[int]) -> ReceptiveField:
        """The network input itself: each pixel sees itself."""
        return ReceptiveField(tuple(Axis.identity(n) for n in size))

    @staticmethod
    def whole(ndim: int) -> ReceptiveField:
        """Every unit sees the whole input (the spatial axes are gone)."""
        return ReceptiveField((None,) * ndim)

    @staticmethod
    def failed(ndim: int, reason: str) -> ReceptiveField:
        return ReceptiveField((None,) * ndim, unknown=reason)

    @property
    def ndim(self) -> int:
        return len(self.axes)

    @property
    def h(self) -> Axis | None:
        """The height axis of an image field (the second-last spatial axis)."""
        return self.axes[-2]

    @property
    def w(self) -> Axis | None:
        """The width axis of an image field (the last spatial axis)."""
        return self.axes[-1]

    @property
    def is_global(self) -> bool:
        return self.unknown is None and all(a is None for a in self.axes)

    def map(self, rule: Callable[[int, Axis], Axis]) -> ReceptiveField:
        """rule(axis index, axis) applied to every axis that is not whole-input."""
        return ReceptiveField(
            tuple(None if a is None else rule(i, a) for i, a in enumerate(self.axes))
        )

    def bounds(
        self, position: Sequence[int], size: Sequence[int], clip: bool = True
    ) -> tuple[tuple[int, int], ...]:
        """Per axis, the half-open input interval of the unit at `position` in an input of
        `size`. clip=True: exactly the input pixels the unit depends on (its gradient's support
        when no path cancels). clip=False: the nominal field, padding included, possibly
        running past the input's edges (the same length for every unit of the layer)."""
        if self.unknown:
            raise ConvlensError(f"receptive field unknown: {self.unknown}")
        if not len(position) == len(size) == self.ndim:
            raise ConvlensError(
                f"a {self.ndim}-d field needs {self.ndim} coordinates and sizes, "
                f"got {tuple(position)} in {tuple(size)}"
            )
        return tuple(
            _span(a, i, n, clip) for a, i, n in zip(self.axes, position, size, strict=True)
        )

    def box(
        self, y: int, x: int, height: int, width: int, clip: bool = True
    ) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), half-open, of unit (y, x) in a height x width image
        (see `bounds` for clip)."""
        (top, bottom), (left, right) = self.bounds((y, x), (height, width), clip)
        return top, left, bottom, right

    def describe(self) -> str:
        if self.unknown:
            return "unknown"
        if self.is_global:
            return "whole input"
        sizes = ["all" if a is None else f"{a.size:.4g}" for a in self.axes]
        jumps = ["-" if a is None else f"{a.jump:.4g}" for a in self.axes]
        return f"{_joined(sizes)} px, stride {_joined(jumps)}"

    def to_json(self) -> dict:
        if self.unknown:
            return {"unknown": self.unknown}
        return {
            _axis_name(i, self.ndim): (
                None if a is None else {"jump": a.jump, "start": a.start, "size": a.size}
            )
            for i, a in enumerate(self.axes)
        }


def _joined(values: list[str]) -> str:
    """ "3" when every axis agrees, else "3x5"."""
    return values[0] if len(set(values)) == 1 else "x".join(values)


def _axis_name(i: int, ndim: int) -> str:
    return _AXIS_NAMES[len(_AXIS_NAMES) - ndim + i] if ndim <= len(_AXIS_NAMES) else f"axis{i}"


def _span(ax: Axis | None, i: int, n: int, exact: bool) -> tuple[int, int]:
    if ax is None:
        return 0, n
    if exact:
        lo, hi = (int(v) for v in ax.spans[i])
        return (lo, hi) if lo < hi else (0, 0)
    lo = ax.start + i * ax.jump
    return math.floor(lo), math.ceil(lo + ax.size)
