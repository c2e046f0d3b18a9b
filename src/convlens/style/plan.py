"""Planning a run before any optimisation: the coarse-to-fine pyramid of sizes, the style
image's size at each level, and the memory estimate that refuses runs too large to fit."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from convlens.errors import ConvlensError
from convlens.style.features import FeatureExtractor
from convlens.style.options import MIN_SIDE, StyleOptions


@dataclass(frozen=True)
class Level:
    """One pyramid level: its (h, w), index and optimisation steps."""

    index: int
    size: tuple[int, int]
    steps: int


def fit(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(h, w) scaled so that the long side is `long_side`."""
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def pyramid(h: int, w: int, o: StyleOptions) -> list[Level]:
    """Coarse to fine: each level doubles the size; the coarsest gets all the steps, finer
    ones half (they start from an upsampled result that is nearly done). ConvlensError when
    a level's short side would be under MIN_SIDE (a long thin image: the backbone's pooling
    would run out of pixels)."""
    sizes = [fit(h, w, max(MIN_SIDE, round(o.size / 2**k))) for k in range(o.scales - 1, -1, -1)]
    sizes[-1] = fit(h, w, o.size)
    if min(sizes[0]) < MIN_SIDE:
        sh, sw = sizes[0]
        raise ConvlensError(
            f"a {w}x{h} content image at a long side of {max(sizes[0])} px is {sw}x{sh}, "
            f"under the {MIN_SIDE} px minimum a side; use a larger size or fewer scales"
        )
    return [Level(i, hw, o.steps if i == 0 else max(1, o.steps // 2)) for i, hw in enumerate(sizes)]


def style_size(style_hw: tuple[int, int], level_hw: tuple[int, int], style_scale: float):
    """The style image's (h, w) at a level: the level's area times style_scale^2 (style and
    output may differ in shape; the Grams are position-normalised)."""
    area = level_hw[0] * level_hw[1] * style_scale**2
    k = math.sqrt(area / (style_hw[0] * style_hw[1]))
    return max(MIN_SIDE, round(style_hw[0] * k)), max(MIN_SIDE, round(style_hw[1] * k))


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _probe_bytes_per_pixel(extractor: FeatureExtractor, channels_last: bool) -> float:
    """Bytes autograd keeps per input pixel for one forward of the extractor, measured on a
    small CPU probe (saved tensors + tapped outputs), deduplicated by storage."""
    side = 64
    x = torch.rand(1, 3, side, side, requires_grad=True)
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ext = extractor.cpu()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = ext(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    total = sum(seen.values()) + sum(o.numel() * o.element_size() for o in outs)
    return total / (side * side)


def estimate_bytes(extractor: FeatureExtractor, h: int, w: int, o: StyleOptions) -> int:
    """Peak memory estimate for an h x w output: the larger of optimising it (autograd state
    x2 for gradients and transient buffers, plus image-sized optimiser state) and the style
    image's forward pass at style_scale (its area is the output's times style_scale^2; done
    before the optimisation, so the two peaks do not add), plus the weights."""
    per_pixel = _probe_bytes_per_pixel(extractor, o.channels_last)
    if o.amp:
        per_pixel /= 2
    weights = sum(p.numel() * p.element_size() for p in extractor.parameters())
    history = 50 * 2 if o.optimizer == "lbfgs" else 4
    style_pixels = (h + 2 * o.pad) * (w + 2 * o.pad) * o.style_scale**2
    h, w = h + 2 * o.pad, w + 2 * o.pad
    optimise = 2.0 * per_pixel * h * w + history * 3 * 4 * h * w
    style = (per_pixel + 3 * 4 * 2) * style_pixels
    return int(max(optimise, style) + 2 * weights + (256 << 20))


def check_memory(
    extractor: FeatureExtractor, hw: tuple[int, int], o: StyleOptions, device: torch.device
) -> int:
    """The estimate for the final size; ConvlensError when it exceeds the allowed share of
    what the device has free."""
    needed = estimate_bytes(extractor, *hw, o)
    available = available_bytes(device)
    if needed > o.max_memory_fraction * available:
        scale = f" at style scale {o.style_scale:g}" if o.style_scale != 1 else ""
        raise ConvlensError(
            f"a {hw[1]}x{hw[0]} output{scale} needs about {needed / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB is available on {device}; use a smaller size"
            f"{' or style scale' if scale else ''}"
        )
    return needed
