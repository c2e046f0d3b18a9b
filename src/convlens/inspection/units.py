"""One streaming pass over images: for each requested unit, its top-k activations.

For every unit (channel) of every requested layer the pass keeps a bounded top-k buffer of
(activation, image id, position) and running sums for the mean: memory depends on the number
of units and k, never on the number of images. Images are decoded by a small thread pool ahead
of the network, batched, and run on the GPU when there is one; forward hooks capture the layers
and the forward pass stops as soon as the last requested layer has been computed.

By default a unit's candidates from one image are its single strongest position there, so the
nine patches come from nine different images (as in Zeiler & Fergus); `per_image=False` ranks
every position. Ties rank the earlier image (then the earlier position) first.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from convlens.errors import ConvlensError
from convlens.images import ImageInput, list_images, load_image
from convlens.models.devices import resolve_device
from convlens.progress import ProgressBar

# An item (one network input) is identified by source index * VIEWS + view index: a source
# image can give several network inputs (one per face found in it).
VIEWS = 1 << 12


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale the shorter side to fit, centre-crop to (H, W): RGB uint8 in and out."""
    h, w = size
    ih, iw = image.shape[:2]
    scale = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    img = Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return np.asarray(img.crop((left, top, left + w, top + h)))


def scale_01(batch: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in 0..1, the default network input."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)


@dataclass
class InputSpec:
    """How images become network inputs.

    `prepare` turns one RGB uint8 image into the network-input views (uint8 (H, W, 3), the
    pixels patches are cropped from): by default the image fitted to `size`; the face encoder
    gives one aligned chip per face. `to_tensor` turns a uint8 batch (N, H, W, 3) into the
    float tensor the network takes (scaling, mean/std normalisation). Images are decoded and
    prepared by a thread pool ahead of the network; `max_workers` caps its size.
    """

    size: tuple[int, int]
    to_tensor: Callable[[np.ndarray], torch.Tensor] = scale_01
    prepare: Callable[[np.ndarray], list[np.ndarray]] | None = None
    # At most this many images prepared at once; 1 for code that is not thread-safe (dlib).
    max_workers: int | None = None

    def views(self, image: np.ndarray) -> list[np.ndarray]:
        if self.prepare is None:
            return [fit_image(image, self.size)]
        return list(self.prepare(image))


def parse_units(spec: str | Sequence[int] | slice | None, n: int, layer: str = "") -> list[int]:
    """'0:16', '3,7,12', '5', 'all' (or a slice / list) -> channel indices, checked against n."""
    where = f" of layer {layer!r}" if layer else ""
    if spec is None or spec == "all":
        return list(range(n))
    if isinstance(spec, slice):
        units = list(range(n))[spec]
    elif isinstance(spec, str):
        try:
            if ":" in spec:
                parts = [int(p) if p.strip() else None for p in spec.split(":")]
                if len(parts) > 3:
                    raise ValueError
                units = list(range(n))[slice(*parts)]
            else:
                units = [int(p) for p in spec.split(",") if p.strip()]
        except ValueError:
            raise ConvlensError(
                f"bad unit list {spec!r}: use a range like 0:16, a list like 3,7,12, or 'all'"
            ) from None
    else:
        units = [int(u) for u in spec]
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ConvlensError(f"unit {bad[0]} out of range{where}: it has {n} units (0..{n - 1})")
    if not units:
        raise ConvlensError(f"unit list {spec!r} selects no unit{where} ({n} units)")
    return units


class TopK:
    """Per-unit bounded top-k of (value, id, position), merged batch by batch on the device.

    The buffer never holds more than k entries per unit (plus one batch while merging).
    """

    def __init__(self, n_units: int, k: int, device: torch.device | str = "cpu"):
        self.k = k
        self.values = torch.empty(n_units, 0, device=device)
        self.ids = torch.empty(n_units, 0, dtype=torch.long, device=device)
        self.positions = torch.empty(n_units, 0, dtype=torch.long, device=device)

    def push(self, values: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor) -> None:
        """Candidates (U, M), in stream order (earlier id, then earlier position, first)."""
        v = torch.cat([self.values, values.float()], 1)
        order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = v.gather(1, order)
        self.ids = torch.cat([self.ids, ids], 1).gather(1, order)
        self.positions = torch.cat([self.positions, positions], 1).gather(1, order)


@dataclass
class LayerTop:
    """One layer's result: unit indices, top-k per unit and per-unit activation statistics."""

    layer: str
    units: list[int]
    shape: tuple[int, ...]  # (C, H, W) of the layer output, (C, 1, 1) for a vector
    values: np.ndarray  # (U, k) descending
    ids: np.ndarray  # (U, k) item ids
    positions: np.ndarray  # (U, k, 2) (y, x) in the layer's output map
    mean: np.ndarray  # (U,) mean over every image and position
    max: np.ndarray  # (U,)

    @property
    def dead(self) -> list[int]:
        """Units that never had a positive activation on any image."""
        return [u for u, m in zip(self.units, self.max, strict=True) if not m > 0]


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


class _ViewPool:
    """The network inputs of the items in some top-k, in reused fixed slots.

    Each kept input is copied into a slot (a view may share memory with all the faces of its
    image); slots of items that fell out of every top-k are reused. Slots come in blocks of
    anonymous memory maps, outside the C heap: hundreds of small arrays that stay alive among
    the network's large temporaries would pin the heap and make RSS creep pass after pass.
    """

    BLOCK = 64

    def __init__(self):
        self.slots: list[np.ndarray] = []
        self.where: dict[int, int] = {}  # item id -> slot
        self.free: list[int] = []

    def _grow(self, like: np.ndarray) -> None:
        buf = mmap.mmap(-1, self.BLOCK * like.nbytes)
        block = np.frombuffer(buf, dtype=like.dtype).reshape(self.BLOCK, *like.shape)
        self.free.extend(range(len(self.slots) + self.BLOCK - 1, len(self.slots) - 1, -1))
        self.slots.extend(block)

    def update(self, live_ids: list[int], ids: list[int], views: list[np.ndarray]) -> None:
        live = set(live_ids)
        for i in [i for i in self.where if i not in live]:
            self.free.append(self.where.pop(i))
        for i, v in zip(ids, views, strict=True):
            if i in live and i not in self.where:
                if not self.free or self.slots[self.free[-1]].shape != v.shape:
                    self._grow(v)
                slot = self.free.pop()
                np.copyto(self.slots[slot], v)
                self.where[i] = slot

    def views(self) -> dict[int, np.ndarray]:
        return {i: self.slots[s] for i, s in self.where.items()}


class _Stop(Exception):
    """Raised by the last hook: nothing after the requested layers needs computing."""


class LayerTaps:
    """Forward hooks on named modules; the forward pass stops once all of them have fired."""

    def __init__(self, model: nn.Module, layers: Sequence[str], stop_early: bool = True):
        self.outputs: dict[str, torch.Tensor] = {}
        self.names = list(layers)
        self.stop_early = stop_early
        modules = dict(model.named_modules())
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name):
        def hook(module, inputs, output):
            if name in self.outputs:
                return  # a module called twice keeps its first output
            if isinstance(output, (tuple, list)):
                output = output[0]
            self.outputs[name] = output
            if self.stop_early and len(self.outputs) == len(self.names):
                raise _Stop

        return hook

    def run(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.outputs = {}
        with contextlib.suppress(_Stop):
            model(x)
        missing = [n for n in self.names if n not in self.outputs]
        if missing:
            raise ConvlensError(f"layer {missing[0]!r} was not run by the model's forward")
        return self.outputs

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def as_maps(out: torch.Tensor) -> torch.Tensor:
    """Layer output as (N, C, H, W): vectors (N, C) become 1x1 maps."""
    if out.dim() == 2:
        return out[:, :, None, None]
    if out.dim() != 4:
        raise ConvlensError(f"layer output has shape {tuple(out.shape)}; expected (N, C[, H, W])")
    return out


def resolve_sources(images: str | os.PathLike | Sequence[ImageInput]) -> list:
    """A folder (all images under it, sorted) or a list of paths / arrays / PIL images."""
    if isinstance(images, (str, os.PathLike)):
        sources = list_images(images)
        if not sources:
            raise ConvlensError(f"{images}: no image files in this folder")
        return sources
    sources = list(images)
    if not sources:
        raise ConvlensError("no images given")
    return sources


def _load_views(source, spec: InputSpec) -> list[np.ndarray]:
    views = spec.views(load_image(source))
    for v in views:
        if v.shape[:2] != tuple(spec.size):
            raise ConvlensError(f"prepared view has size {v.shape[:2]}, expected {spec.size}")
    return views


def _name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def iter_views(
    sources: Sequence, spec: InputSpec, skipped: list[str], workers: int = 4, ahead: int = 64
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(source index, views) in order, decoded `ahead` images in advance by a thread pool.

    An image that cannot be read or prepared is reported (warning + `skipped`) and passed over.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        it = iter(enumerate(sources))
        for i, src in it:
            pending.append((i, src, pool.submit(_load_views, src, spec)))
            if len(pending) >= ahead:
                break
        while pending:
            i, src, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt[0], nxt[1], pool.submit(_load_views, nxt[1], spec)))
            try:
                views = fut.result()
            except ConvlensError as e:
                msg = str(e) if _name(src) in str(e) else f"{_name(src)}: {e}"
                skipped.append(msg)
                warnings.warn(f"skipped {msg}", stacklevel=2)
                continue
            yield i, views


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
    progress: bool = True,
    keep_views: bool = True,
) -> ScanResult:
    """Stream every image through `model` once; return each requested unit's top `top`.

    `layers` maps a named module (see `convlens inspect layers`) to its units ('0:16', a list,
    None for all). The model is put in eval mode (and moved to `device`) for the pass.
    keep_views: keep the network inputs of the current top entries (`result.views`), at most
    one per top-k slot (units x top; 48 units x 9 at 150x150x3 is at most 29 MB), so patches
    need no second decode or face detection.
    """
    if top < 1:
        raise ConvlensError(f"--top must be at least 1 (got {top})")
    if batch_size < 1:
        raise ConvlensError(f"batch size must be at least 1 (got {batch_size})")
    check_layers(model, layers)
    sources = resolve_sources(images)
    device = resolve_device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    workers = min(workers, spec.max_workers or workers)

    result = ScanResult({}, sources)
    kept = _ViewPool()
    state: dict[str, dict] = {}
    taps = LayerTaps(model, list(layers))
    start = time.perf_counter()

    def run_batch(batch: list[np.ndarray], ids: list[int]) -> None:
        x = spec.to_tensor(np.stack(batch)).to(device, non_blocking=True)
        with torch.inference_mode():
            outs = taps.run(model, x)
            id_t = torch.tensor(ids, dtype=torch.long, device=device)
            for name, out in outs.items():
                _accumulate(state, name, as_maps(out), layers[name], id_t, top, per_image)
        result.items += len(ids)
        if keep_views:
            kept.update(
                torch.cat([s["topk"].ids.ravel() for s in state.values()]).tolist(), ids, batch
            )

    try:
        with ProgressBar("inspect", total=len(sources), unit="img", disable=not progress) as bar:
            batch: list[np.ndarray] = []
            ids: list[int] = []
            done = 0  # source images passed (read or skipped)
            for i, views in iter_views(sources, spec, result.skipped, workers, 4 * batch_size):
                for v, view in enumerate(views[:VIEWS]):
                    batch.append(view)
                    ids.append(i * VIEWS + v)
                    if len(batch) == batch_size:
                        run_batch(batch, ids)
                        batch, ids = [], []
                result.images += 1
                bar.advance(i + 1 - done, info=f"{result.items + len(batch)} inputs")
                done = i + 1
            if batch:
                run_batch(batch, ids)
    finally:
        taps.close()
        model.train(was_training)
    result.seconds = time.perf_counter() - start
    result.views = kept.views()
    if not state:
        first = f"; first: {result.skipped[0]}" if result.skipped else ""
        raise ConvlensError(f"none of the {len(sources)} images gave a network input{first}")
    for name in layers:
        s = state[name]
        pos = s["topk"].positions.cpu().numpy()
        w = s["shape"][2]
        result.layers[name] = LayerTop(
            layer=name,
            units=s["units"],
            shape=s["shape"],
            values=s["topk"].values.cpu().numpy(),
            ids=s["topk"].ids.cpu().numpy(),
            positions=np.stack([pos // w, pos % w], -1),
            mean=(s["sum"] / s["count"]).cpu().numpy(),
            max=s["max"].cpu().numpy(),
        )
    return result


def check_layers(model: nn.Module, layers) -> None:
    names = dict(model.named_modules())
    if not layers:
        raise ConvlensError("no layer given")
    for name in layers:
        if name not in names or not name:
            valid = ", ".join(n for n in names if n)
            raise ConvlensError(f"unknown layer {name!r}; valid layers: {valid}")


def _accumulate(state, name, out, unit_spec, ids, top, per_image) -> None:
    b, c, h, w = out.shape
    s = state.get(name)
    if s is None:
        units = parse_units(unit_spec, c, name)
        s = state[name] = {
            "units": units,
            "index": torch.tensor(units, device=out.device),
            "shape": (c, h, w),
            "topk": TopK(len(units), top, out.device),
            "sum": torch.zeros(len(units), dtype=torch.float64, device=out.device),
            "max": torch.full((len(units),), -torch.inf, device=out.device),
            "count": 0,
        }
    a = out.index_select(1, s["index"]).flatten(2).float()  # (B, U, HW)
    s["sum"] += a.sum((0, 2), dtype=torch.float64)
    s["count"] += b * h * w
    if per_image:
        vals, pos = a.max(2)  # (B, U): first maximum on ties
        s["max"] = torch.maximum(s["max"], vals.max(0).values)
        s["topk"].push(vals.T, ids[None, :].expand(len(s["units"]), b), pos.T)
    else:
        u = len(s["units"])
        s["max"] = torch.maximum(s["max"], a.amax((0, 2)))
        vals = a.permute(1, 0, 2).reshape(u, b * h * w)
        cand_ids = ids[:, None].expand(b, h * w).reshape(1, -1).expand(u, -1)
        pos = torch.arange(h * w, device=out.device).repeat(b)[None].expand(u, -1)
        s["topk"].push(vals, cand_ids, pos)


def load_items(result: ScanResult, ids: Sequence[int], spec: InputSpec) -> dict[int, np.ndarray]:
    """The network-input views (uint8 (H, W, 3)) of the given item ids: those the pass kept,
    the others prepared again from their sources (each source read once)."""
    views = {i: result.views[i] for i in {int(i) for i in ids} if i in result.views}
    by_source: dict[int, list[int]] = {}
    for i in {int(i) for i in ids if i >= 0 and int(i) not in views}:
        by_source.setdefault(i // VIEWS, []).append(i)
    for src_index, wanted in sorted(by_source.items()):
        got = _load_views(result.sources[src_index], spec)
        for i in wanted:
            views[i] = got[i % VIEWS]
    return views


def gradient_maps(
    model: nn.Module,
    layer: str,
    inputs: np.ndarray,
    units: Sequence[int],
    positions: Sequence[tuple[int, int]],
    spec: InputSpec,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """|d unit / d input| summed over colour channels: (N, H, W) for N (view, unit, position)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    taps = LayerTaps(model, [layer])
    maps = []
    try:
        for s in range(0, len(inputs), batch_size):
            x = spec.to_tensor(np.asarray(inputs[s : s + batch_size])).to(device)
            x.requires_grad_(True)
            with torch.enable_grad():
                out = as_maps(taps.run(model, x)[layer])
                n = len(x)
                u = torch.tensor(units[s : s + n], device=device)
                yx = torch.tensor(np.asarray(positions[s : s + n]), device=device).reshape(n, 2)
                picked = out[torch.arange(n, device=device), u, yx[:, 0], yx[:, 1]]
                (grad,) = torch.autograd.grad(picked.sum(), x)
            maps.append(grad.abs().sum(1).cpu().numpy())
    finally:
        taps.close()
        model.train(was_training)
    return np.concatenate(maps) if maps else np.zeros((0, *spec.size), np.float32)
