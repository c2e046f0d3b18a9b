"""Draw tracks on a frame: box, track id, name (or unknown) and liveness state."""

from __future__ import annotations

import numpy as np

COLOURS = {"live": (40, 200, 60), "spoof": (230, 40, 40), "undecided": (240, 190, 40)}


def label(track) -> str:
    s = track.state
    name = s.name if s.name else ("unknown" if s.distance is not None else "...")
    text = f"#{track.id} {name}"
    if s.monitor is not None:
        text += f" [{s.verdict}]"
        ch = s.monitor.challenge
        if ch is not None and ch.prompt:
            text += f" please {ch.prompt}"
    return text


def draw(rgb: np.ndarray, tracks) -> np.ndarray:
    """A copy of the frame with every track's box and label."""
    import cv2

    out = np.ascontiguousarray(rgb).copy()
    for t in tracks:
        colour = COLOURS.get(t.state.verdict, (200, 200, 200))
        x0, y0, x1, y1 = t.box
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
        cv2.putText(out, label(t), (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    colour, 1, cv2.LINE_AA)  # fmt: skip
    return out
