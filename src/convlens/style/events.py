"""What the optimisation loop reports, and its standard subscribers.

The loop calls `callback(event)` with a `StepEvent` after every step and one `DoneEvent` at
the end. The progress bar, the frames folder, the GIF and the result's history are
subscribers like any user callback:

    def show(event):
        if isinstance(event, StepEvent) and event.logged:
            print(event.step, event.losses())
    transfer("photo.jpg", "wave.jpg", callback=show)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

LOG_EVERY = 10  # steps between logged loss values (a GPU sync each)


@dataclass
class StepEvent:
    """One optimisation step: `scale` of `scales` (coarse to fine, from 0), `step` of `steps`
    at that scale, `size` (h, w). `logged` marks every LOG_EVERY-th and the last step, the
    ones whose losses the history and the progress bar show."""

    scale: int
    scales: int
    step: int
    steps: int
    size: tuple[int, int]
    logged: bool
    total: torch.Tensor = field(repr=False)
    terms: torch.Tensor = field(repr=False)  # content, style, tv (unweighted)
    render: Callable[[], Image.Image] = field(repr=False)
    _image: Image.Image | None = field(default=None, repr=False)

    def losses(self) -> dict[str, float]:
        """total, content, style, tv as numbers (a device sync: ask on logged steps)."""
        content, style, tv = self.terms.tolist()
        return {"total": float(self.total.detach()), "content": content, "style": style, "tv": tv}

    def image(self) -> Image.Image:
        """The current image, RGB (rendered once per event, on request; ask during the
        callback: later the optimised pixels have moved on)."""
        if self._image is None:
            self._image = self.render()
        return self._image


@dataclass
class DoneEvent:
    """The run finished: the final image, seconds spent optimising, the pyramid's sizes."""

    image: Image.Image
    seconds: float
    sizes: list[tuple[int, int]]


Callback = Callable[[StepEvent | DoneEvent], None]


def frame_interval(event: StepEvent, frame_every: int) -> int:
    """Steps between frames: as asked, or about 30 per scale."""
    return frame_every or max(1, event.steps // 30)


class HistoryRecorder:
    """Appends the losses of logged steps to `history` (StyleResult.history)."""

    def __init__(self, history: list[dict]):
        self.history = history

    def __call__(self, event) -> None:
        if isinstance(event, StepEvent) and event.logged:
            self.history.append({"scale": event.scale, "step": event.step, **event.losses()})


class ProgressReporter:
    """One rich progress bar per scale, showing the logged losses."""

    def __init__(self):
        self._bar = None
        self._scale = None

    def __call__(self, event) -> None:
        if isinstance(event, DoneEvent):
            self.close()
            return
        if event.scale != self._scale:
            self.close()
            self._open(event)
        info = None
        if event.logged:
            v = event.losses()
            info = (
                f"J {v['total']:.3g} content {v['content']:.3g} style {v['style']:.3g} "
                f"tv {v['tv']:.2g}"
            )
        self._bar.advance(1, info)

    def _open(self, event: StepEvent) -> None:
        from convlens.progress import ProgressBar

        h, w = event.size
        desc = f"style {w}x{h}" + (
            f" ({event.scale + 1}/{event.scales})" if event.scales > 1 else ""
        )
        self._bar = ProgressBar(desc, event.steps, unit="it").__enter__()
        self._scale = event.scale

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class FrameSaver:
    """Saves frame_s{scale}_{step:05d}.png into `folder` every few steps."""

    def __init__(self, folder: Path, frame_every: int = 0):
        self.folder = Path(folder)
        self.frame_every = frame_every
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, event) -> None:
        if (
            isinstance(event, StepEvent)
            and event.step % frame_interval(event, self.frame_every) == 0
        ):
            event.image().save(self.folder / f"frame_s{event.scale}_{event.step:05d}.png")


class GifRecorder:
    """Collects frames every few steps; writes the animated GIF, ending on the result."""

    def __init__(self, path: Path, frame_every: int = 0, max_side: int = 384):
        self.path = Path(path)
        self.frame_every = frame_every
        self.max_side = max_side
        self.frames: list[Image.Image] = []

    def __call__(self, event) -> None:
        if isinstance(event, DoneEvent):
            if self.frames:
                self._write(self.frames + [event.image])
        elif event.step % frame_interval(event, self.frame_every) == 0:
            self.frames.append(event.image())

    def _write(self, frames: list[Image.Image]) -> None:
        w, h = frames[-1].size
        scale = min(1.0, self.max_side / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        imgs = [f.resize(size, Image.LANCZOS) for f in frames]
        durations = [120] * (len(imgs) - 1) + [2000]  # hold the result
        imgs[0].save(
            self.path,
            save_all=True,
            append_images=imgs[1:],
            duration=durations,
            loop=0,
            optimize=True,
        )
