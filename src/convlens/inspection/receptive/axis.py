"""One spatial axis of a receptive field, and the arithmetic each kind of layer applies to it.

Every rule works on one axis at a time, so the same code serves 1-d signals, 2-d images and
3-d volumes: a layer applies its per-axis parameters (kernel, stride, padding, dilation) to
each axis of its input's field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMPTY = (1 << 40, -(1 << 40))  # an interval no input pixel is in (a position that is padding)


class Unknown(Exception):
    """The field cannot be derived through an op; the message says why."""


def num(v: float) -> int | float:
    """An integer where the value is one (jumps and starts are integers unless resampled)."""
    return int(round(v)) if abs(v - round(v)) < 1e-9 else float(v)


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
            raise Unknown("an op's output does not depend on its input")
        a0, a1 = first[rows[0]], first[rows[-1]]
        ratio = (a1 - a0) / (rows[-1] - rows[0]) if len(rows) > 1 else 1
        extent = int((last - first)[rows].max())
        jump = num(self.jump * ratio)
        start = num(self.start + (a0 - rows[0] * ratio) * self.jump)
        return Axis(jump, start, self.size + extent * self.jump, self._gather(taps))

    def _gather(self, taps: np.ndarray) -> np.ndarray:
        """Union, per output position, of the spans at the in-range taps."""
        n = len(self.spans)
        valid = (taps >= 0) & (taps < n)
        idx = np.clip(taps, 0, max(n - 1, 0))
        lo = np.where(valid, self.spans[idx, 0], EMPTY[0]).min(1)
        hi = np.where(valid, self.spans[idx, 1], EMPTY[1]).max(1)
        return np.stack([lo, hi], 1)


def union_axis(axes: list[Axis]) -> Axis:
    """Branches that meet (a residual add): each position sees what any branch sees."""
    if len({a.jump for a in axes}) != 1:
        raise Unknown(f"branches with different strides meet ({sorted({a.jump for a in axes})})")
    start = min(a.start for a in axes)
    end = max(a.start + a.size for a in axes)
    spans = np.stack([a.spans for a in axes])
    exact = np.stack([spans[:, :, 0].min(0), spans[:, :, 1].max(0)], 1)
    return Axis(axes[0].jump, start, end - start, exact)
