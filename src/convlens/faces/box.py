"""The one face box type: `Box(x0, y0, x1, y1)`, pixel corners with x1/y1 exclusive.

Width is x1 - x0 and height y1 - y0, like a NumPy slice `image[y0:y1, x0:x1]`, clipped to the
image. dlib's rectangles are inclusive (right = x1 - 1); face_recognition's "css" tuples are
(top, right, bottom, left) with dlib's inclusive right/bottom. JSON writes a Box as a list of
four ints.
"""

from __future__ import annotations

from typing import NamedTuple


class Box(NamedTuple):
    """A face box in pixels: left x0, top y0, right x1 and bottom y1, x1/y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def from_dlib(
        cls, rect: tuple[int, int, int, int], width: int | None = None, height: int | None = None
    ) -> Box:
        """From dlib's inclusive (left, top, right, bottom), clipped to width x height."""
        left, top, right, bottom = (int(v) for v in rect)
        x1, y1 = right + 1, bottom + 1
        if width is not None:
            left, x1 = max(left, 0), min(x1, int(width))
        if height is not None:
            top, y1 = max(top, 0), min(y1, int(height))
        return cls(left, top, x1, y1)

    @classmethod
    def of(cls, values) -> Box:
        """A Box from any four numbers (x0, y0, x1, y1), e.g. a stored JSON list."""
        x0, y0, x1, y1 = (int(v) for v in values)
        return cls(x0, y0, x1, y1)

    def to_dlib(self) -> tuple[int, int, int, int]:
        """dlib's inclusive (left, top, right, bottom)."""
        return (self.x0, self.y0, self.x1 - 1, self.y1 - 1)

    def to_face_recognition(self) -> tuple[int, int, int, int]:
        """face_recognition's (top, right, bottom, left), right/bottom inclusive as in dlib."""
        return (self.y0, self.x1 - 1, self.y1 - 1, self.x0)

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0
