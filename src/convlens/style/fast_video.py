"""Feed-forward stylisation of video, frame by frame, with temporal stabilisation.

A feed-forward network paints each frame on its own, so fine texture shimmers where the input
barely changed. The stabiliser blends each output with the previous *output* where the input
did not change: per pixel, w = smooth * exp(-|in_t - in_{t-1}| / TAU) (luminance change,
blurred), out_t = (1 - w) * net(in_t) + w * out_{t-1}. Still regions keep their strokes,
moving ones follow the network.

With `flow=True` the previous output (and input) are first warped onto the current frame by
a dense optical flow (OpenCV's Farneback, on the luminance): the blend then also holds the
strokes on moving regions, and the change that decides the weight is measured against the
warped previous input (large where the flow is wrong or something was uncovered).

Flicker is measured as mean |out_t - out_{t-1}| divided by mean |in_t - in_{t-1}| over the
video (1: the output changes as much as the input; the raw networks are far above 1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convlens.errors import ConvlensError
from convlens.style import imaging
from convlens.style.fast import FastStylizer, check_size, check_strength, keep_colours, to_batch

TAU = 0.03  # luminance change (of 1) at which the previous output's weight falls to 1/e
# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags: OpenCV's example values
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


@dataclass
class VideoReport:
    frames: int
    seconds: float
    fps: float  # frames stylised per second (decode, network, stabilise, encode)
    flicker_input: float  # mean |in_t - in_{t-1}| (0..1)
    flicker_output: float  # mean |out_t - out_{t-1}| (0..1)
    damaged: bool  # the input ended in undecodable data; what decoded was written

    @property
    def flicker_ratio(self) -> float:
        return self.flicker_output / max(self.flicker_input, 1e-9)


def still_weight(x: torch.Tensor, prev: torch.Tensor, smooth: float) -> torch.Tensor:
    """Per-pixel weight of the previous output: high where the input did not change."""
    change = (imaging.yiq(x)[:, :1] - imaging.yiq(prev)[:, :1]).abs()
    change = F.avg_pool2d(change, 5, 1, 2, count_include_pad=False)
    return smooth * torch.exp(-change / TAU)


def _gray8(x: torch.Tensor):
    return (imaging.yiq(x)[0, 0].clamp(0, 1) * 255 + 0.5).byte().cpu().numpy()


def warp_previous(x: torch.Tensor, prev_in: torch.Tensor, prev_out: torch.Tensor):
    """prev_in and prev_out (1, 3, H, W) moved onto frame x: Farneback flow from x to
    prev_in (per pixel of x: where it was), sampled bilinearly, borders replicated."""
    import cv2
    import numpy as np

    flow = cv2.calcOpticalFlowFarneback(_gray8(x), _gray8(prev_in), None, *FARNEBACK)
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    both = torch.cat([prev_in, prev_out], 1)[0].permute(1, 2, 0).float().cpu().numpy()
    moved = cv2.remap(both, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    moved = torch.from_numpy(moved).permute(2, 0, 1)[None].to(x)
    return moved[:, :3], moved[:, 3:]


class Stabiliser:
    """Carries the previous input and output between frames; measures flicker."""

    def __init__(self, smooth: float, flow: bool = False):
        self.smooth, self.flow = smooth, flow
        self.prev_in = self.prev_out = None
        self.sum_in = self.sum_out = 0.0
        self.pairs = 0

    def __call__(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.prev_in is not None:
            if self.smooth > 0:
                ref_in, ref_out = self.prev_in, self.prev_out
                if self.flow:
                    ref_in, ref_out = warp_previous(x, ref_in, ref_out)
                w = still_weight(x, ref_in, self.smooth)
                out = (1 - w) * out + w * ref_out
            self.sum_in += float((x - self.prev_in).abs().mean())
            self.sum_out += float((out - self.prev_out).abs().mean())
            self.pairs += 1
        self.prev_in, self.prev_out = x, out
        return out


def stylize_video(
    source: str | os.PathLike,
    output: str | os.PathLike,
    style: Sequence = (),
    *,
    stylizer: FastStylizer | None = None,
    strength: float = 1.0,
    size: int = 512,
    preserve_colors: bool = False,
    style_weights: Sequence[float] | None = None,
    smooth: float = 0.7,
    flow: bool = False,
    max_frames: int | None = None,
    callback: Callable[[int, int | None], None] | None = None,
) -> VideoReport:
    """Stylise every frame of `source` into `output` (.mp4/.webm/.gif); smooth in [0, 1) is
    the stabiliser's strength (0: off); `flow` warps the previous output by optical flow first.
    `callback(done, total)` after each frame."""
    from convlens.video import FrameReader, VideoWriter

    check_strength(strength)
    if not 0 <= smooth < 1:
        raise ConvlensError(f"smooth {smooth!r} is out of range [0, 1)")
    reader = FrameReader(source, max_frames=max_frames)  # opens: an undecodable file fails here
    try:
        frames = iter(reader)
        first = next(frames)  # decodes one frame before any network is loaded
        st = stylizer or FastStylizer()
        check_size(size, 1, st.device)
        vec = st.prepare_style(style, style_weights)
        stab = Stabiliser(smooth, flow)
        t0 = time.perf_counter()
        with VideoWriter(output, fps=reader.fps) as writer:
            n = 0
            for frame in _chain(first, frames):
                x, (h, w) = to_batch(frame.rgb, size)
                x = x.to(st.device)
                out = st.run(x, vec, strength)
                if preserve_colors:
                    out = keep_colours(out, x)
                out = stab(x, out)
                writer.write(
                    (out[0, :, :h, :w].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5)
                    .byte()
                    .cpu()
                    .numpy()
                )
                n += 1
                if callback is not None:
                    callback(n, reader.frame_count)
        secs = time.perf_counter() - t0
    finally:
        reader.close()
    pairs = max(stab.pairs, 1)
    return VideoReport(n, secs, n / secs, stab.sum_in / pairs, stab.sum_out / pairs, reader.damaged)


def _chain(first, rest):
    yield first
    yield from rest
