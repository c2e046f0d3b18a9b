"""One streaming pass over images: for each requested unit, its top-k activations.

The pass keeps, per unit, a bounded top-k and running statistics (topk.py): memory depends
on the number of units and k, never on the number of images. Images are decoded by a small
thread pool ahead of the network (inputs.py), batched, and run on the GPU when there is one;
forward hooks capture the layers and the forward pass stops as soon as the last requested
layer has been computed (taps.py).

By default a unit's candidates from one image are its single strongest position there, so the
nine patches come from nine different images (as in Zeiler & Fergus); `per_image=False` ranks
every position. Progress goes to `callback`, a plain callable receiving a ScanProgress after
each source image.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.images import ImageInput
from convlens.inspection.inputs import VIEWS, InputSpec, iter_views, load_views, resolve_sources
from convlens.inspection.taps import LayerTaps, as_maps, check_layers
from convlens.inspection.topk import LayerTop, UnitStats, ViewPool, parse_units
from convlens.models.devices import resolve_device


@dataclass(frozen=True)
class ScanProgress:
    """Where a pass stands, after each source image."""

    images_done: int  # source images passed (read or skipped)
    total: int  # source images in all
    inputs: int  # network inputs so far (several per image when it has several faces)
    skipped: int  # images that could not be read or prepared


@dataclass
class ScanResult:
    layers: dict[str, LayerTop]
    sources: list  # what item ids point into (paths or in-memory images)
    items: int = 0  # network inputs seen
    images: int = 0  # source images read
    skipped: list[str] = field(default_factory=list)  # one line per image that failed
    seconds: float = 0.0
    # The network inputs still in some unit's top-k, kept during the pass (bounded by the
    # number of top-k slots) so that patches need no second decode / face detection.
    views: dict[int, np.ndarray] = field(default_factory=dict)

    def source_of(self, item_id: int) -> tuple[object, int]:
        return self.sources[item_id // VIEWS], item_id % VIEWS


def check_scan_options(top: int, batch_size: int) -> None:
    """The pass's sizes, checked before any work (the messages name values, not flags)."""
    if not _whole(top) or top < 1:
        raise ConvlensError(f"top must be a whole number of patches per unit, 1 or more ({top!r})")
    if not _whole(batch_size) or batch_size < 1:
        raise ConvlensError(f"batch size must be a whole number, 1 or more ({batch_size!r})")


def _whole(n) -> bool:
    return isinstance(n, numbers.Integral) and not isinstance(n, bool)


class _Pass:
    """One pass's state: the hooks, each layer's UnitStats, the kept network inputs."""

    def __init__(self, model, layers, spec, top, per_image, device, result, keep_views):
        self.model, self.layers, self.spec = model, layers, spec
        self.top, self.per_image, self.device = top, per_image, device
        self.result, self.keep_views = result, keep_views
        self.stats: dict[str, UnitStats] = {}
        self.kept = ViewPool()
        self.taps = LayerTaps(model, list(layers))

    def run_batch(self, batch: list[np.ndarray], ids: list[int]) -> None:
        x = self.spec.to_tensor(np.stack(batch)).to(self.device, non_blocking=True)
        with torch.inference_mode():
            outs = self.taps.run(self.model, x)
            id_t = torch.tensor(ids, dtype=torch.long, device=self.device)
            for name, out in outs.items():
                maps = as_maps(out)
                if name not in self.stats:
                    c, h, w = maps.shape[1:]
                    units = parse_units(self.layers[name], c, name)
                    self.stats[name] = UnitStats(units, (c, h, w), self.top, maps.device)
                self.stats[name].add(maps, id_t, self.per_image)
        self.result.items += len(ids)
        if self.keep_views:
            live = torch.cat([s.topk.ids.ravel() for s in self.stats.values()]).tolist()
            self.kept.update(live, ids, batch)


def _batches(
    sources: Sequence,
    spec: InputSpec,
    batch_size: int,
    workers: int,
    result: ScanResult,
    callback: Callable[[ScanProgress], None] | None,
) -> Iterator[tuple[list[np.ndarray], list[int]]]:
    """(views, item ids) batches of every source's network inputs, reporting progress."""
    batch: list[np.ndarray] = []
    ids: list[int] = []
    total = len(sources)

    def report(done: int) -> None:
        if callback is not None:
            inputs = result.items + len(batch)
            callback(ScanProgress(done, total, inputs, len(result.skipped)))

    done = 0
    for i, views in iter_views(sources, spec, result.skipped, workers, 4 * batch_size):
        for v, view in enumerate(views[:VIEWS]):
            batch.append(view)
            ids.append(i * VIEWS + v)
            if len(batch) == batch_size:
                yield batch, ids
                batch, ids = [], []
        result.images += 1
        done = i + 1
        report(done)
    if done < total:  # the last images were skipped
        report(total)
    if batch:
        yield batch, ids


def scan(
    model: nn.Module,
    images: str | os.PathLike | Sequence[ImageInput],
    layers: dict[str, str | Sequence[int] | slice | None],
    spec: InputSpec,
    top: int = 9,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    per_image: bool = True,
    workers: int | None = None,
    callback: Callable[[ScanProgress], None] | None = None,
    keep_views: bool = True,
) -> ScanResult:
    """Stream every image through `model` once; return each requested unit's top `top`.

    `layers` maps a named module (see `list_layers`) to its units ('0:16', a list, None for
    all). The model is put in eval mode (and moved to `device`, default auto) for the pass.
    callback: called with a ScanProgress after each source image.
    keep_views: keep the network inputs of the current top entries (`result.views`), at most
    one per top-k slot (units x top; 48 units x 9 at 150x150x3 is at most 29 MB), so patches
    need no second decode or face detection.
    """
    check_scan_options(top, batch_size)
    check_layers(model, layers)
    sources = resolve_sources(images)
    device = resolve_device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    workers = min(workers, spec.max_workers or workers)
    result = ScanResult({}, sources)
    run = _Pass(model, layers, spec, top, per_image, device, result, keep_views)
    start = time.perf_counter()
    try:
        for batch, ids in _batches(sources, spec, batch_size, workers, result, callback):
            run.run_batch(batch, ids)
    finally:
        run.taps.close()
        model.train(was_training)
    result.seconds = time.perf_counter() - start
    result.views = run.kept.views()
    if not run.stats:
        first = f"; first: {result.skipped[0]}" if result.skipped else ""
        raise ConvlensError(f"none of the {len(sources)} images gave a network input{first}")
    result.layers = {name: run.stats[name].result(name) for name in layers}
    return result


def load_items(result: ScanResult, ids: Sequence[int], spec: InputSpec) -> dict[int, np.ndarray]:
    """The network-input views (uint8 (H, W, 3)) of the given item ids: those the pass kept,
    the others prepared again from their sources (each source read once)."""
    views = {i: result.views[i] for i in {int(i) for i in ids} if i in result.views}
    by_source: dict[int, list[int]] = {}
    for i in {int(i) for i in ids if i >= 0 and int(i) not in views}:
        by_source.setdefault(i // VIEWS, []).append(i)
    for src_index, wanted in sorted(by_source.items()):
        got = load_views(result.sources[src_index], spec)
        for i in wanted:
            views[i] = got[i % VIEWS]
    return views
