"""Neural style transfer: `transfer(content, style, **options) -> PIL.Image`.

    from convlens.style import transfer
    transfer("photo.jpg", "starry_night.jpg", size=512).save("out.png")

The options are the fields of `StyleOptions` (`convlens style --help` shows the same, with
limits); `callback=` receives a `StepEvent` per step and a final `DoneEvent`.
"""

from convlens.style.events import DoneEvent, StepEvent
from convlens.style.optimize import StyleResult, run_transfer, transfer
from convlens.style.options import StyleOptions

__all__ = ["DoneEvent", "StepEvent", "StyleOptions", "StyleResult", "run_transfer", "transfer"]
