"""One progress bar for all long work: description, bar, count, rate, ETA and live fields."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


class ProgressBar:
    """A bar on stderr. `advance(n, info="loss 0.31")` moves it and shows live values.

    Use as a context manager; `disable=True` (or a non-terminal stderr under CI) keeps it quiet
    except for the final line that rich prints.
    """

    def __init__(self, description: str, total: int | None, unit: str = "it", disable=False):
        self.unit = unit
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=sys.stderr),
            disable=disable,
        )
        self._task = self._progress.add_task(description, total=total, rate="", info="")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def advance(self, n: float = 1, info: str | None = None) -> None:
        fields = {} if info is None else {"info": info}
        self._progress.update(self._task, advance=n, **fields)
        speed = self._progress.tasks[0].speed
        if speed:
            self._progress.update(self._task, rate=f"{speed:.1f} {self.unit}/s")


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    unit: str = "it",
    disable: bool = False,
) -> Iterator[T]:
    """Iterate with a progress bar showing rate and ETA."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with ProgressBar(description, total, unit, disable) as bar:
        for item in items:
            yield item
            bar.advance()
