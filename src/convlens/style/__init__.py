"""Neural style transfer: `transfer(content, style, **options) -> PIL.Image`.

    from convlens.style import transfer
    transfer("photo.jpg", "starry_night.jpg", size=512).save("out.png")

The options are the fields of `StyleOptions` (`convlens style --help` shows the same, with
limits); `callback=` receives a `StepEvent` per step and a final `DoneEvent`.

Feed-forward (one network pass): `FastStylizer().stylize("photo.jpg", "starry_night.jpg")`,
`stylize_video(...)`, and `train_fast(painting, photos_dir, "net.pt")` for one network per
painting (convlens.style.fast, .fast_video, .train_fast).
"""

from convlens.style.events import DoneEvent, StepEvent
from convlens.style.fast import FastStylizer
from convlens.style.fast_video import stylize_video
from convlens.style.optimize import StyleResult, run_transfer, transfer
from convlens.style.options import StyleOptions
from convlens.style.train_fast import train_fast

__all__ = [
    "DoneEvent",
    "FastStylizer",
    "StepEvent",
    "StyleOptions",
    "StyleResult",
    "run_transfer",
    "stylize_video",
    "train_fast",
    "transfer",
]
