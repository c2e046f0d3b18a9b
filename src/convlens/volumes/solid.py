"""Solid texture from a 2-D exemplar: a volume whose slices along all three axes have the
exemplar's VGG19 Gram statistics (Kopf et al. 2007 for the idea; Gutierrez et al. 2020 and
Henzler et al. 2020 for neural versions), so a cube cut anywhere shows the material.

    from convlens.volumes.solid import solid_texture
    result = solid_texture("brick.png", size=64, steps=200)
    result.volume            # float32 (64, 64, 64, 3) RGB in 0..1

Each step draws a few random slices per axis, runs them through VGG19 (the registry's
"vgg19", the original Caffe weights) and adds the Gatys style cost of every slice against
the exemplar's position-normalised Grams (convlens.style.losses.StyleLoss), so memory is that
of a few 2-D images, not of the volume through the network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from convlens.errors import ConvlensError
from convlens.style.losses import StyleLoss

LAYERS = ("relu1_1", "relu2_1", "relu3_1")
MAX_SIZE = 512


@dataclass
class SolidResult:
    volume: np.ndarray  # float32 (S, S, S, 3), RGB 0..1
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


class SliceFeatures(torch.nn.Module):
    """VGG19 (pool 'avg', Gatys' choice for synthesis) up to the deepest of `layers`; returns
    the feature maps of those layers for a batch of RGB 0..1 images."""

    def __init__(self, layers=LAYERS, vgg=None):
        super().__init__()
        from convlens.models import registry
        from convlens.nd.layers import SequentialTaps

        vgg = vgg or registry.get("vgg19", task="style-backbone").load(pool="avg")
        self.vgg = vgg.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.taps = SequentialTaps(self.vgg.features, self.layers)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        out = self.taps(self.vgg.normalize(images))
        return [out[n] for n in self.layers]


def random_slices(volume: torch.Tensor, per_axis: int, gen: torch.Generator) -> torch.Tensor:
    """(3 * per_axis, C, S, S): slices of a (C, S, S, S) volume across each of its axes."""
    size = volume.shape[1]
    out = []
    for axis in range(3):
        for i in torch.randint(0, size, (per_axis,), generator=gen).tolist():
            out.append(volume.select(axis + 1, i))
    return torch.stack(out)


def all_slices(volume: torch.Tensor) -> torch.Tensor:
    """(3 * S, C, S, S): every slice of a (C, S, S, S) volume across each axis."""
    return torch.cat([volume.movedim(axis + 1, 0) for axis in range(3)])


def style_targets(features: SliceFeatures, image: torch.Tensor) -> list[tuple[StyleLoss, float]]:
    """Per layer: the exemplar's StyleLoss and 1 / its cost against an all-zero Gram, so every
    layer's cost is relative (1.0 = as far as no texture at all) and no layer's scale (deep
    Caffe-VGG Grams are ~1e4 x the first layer's) drowns the others."""
    out = []
    with torch.no_grad():
        for m in features(image):
            loss = StyleLoss(StyleLoss.get_target(m))
            out.append((loss, 1.0 / float(loss(torch.zeros_like(m)))))
    return out


def slice_loss(slices: torch.Tensor, features: SliceFeatures, targets) -> torch.Tensor:
    """Mean over the slices of the summed relative per-layer style costs."""
    maps = features(slices)
    total = sum(w * loss(m) for (loss, w), m in zip(targets, maps, strict=True))
    return total / maps[0].shape[0]


class SparseAdam:
    """Adam over a list of tensors with a per-element step count: only the elements a step's
    slices touched (non-zero gradient) update their moments, each bias-corrected by its own
    count, so a voxel skipped for many steps is not thrown by a stale state when drawn again
    (plain Adam, one global count, made the 64^3 cost rise)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.99)) -> None:
        self.params, self.lr, self.betas = params, lr, betas
        self.state = [(torch.zeros_like(p), torch.zeros_like(p), torch.zeros_like(p))
                      for p in params]  # fmt: skip

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for p, (m, v, t) in zip(self.params, self.state, strict=True):
            g = p.grad
            touched = g != 0
            t += touched
            m.copy_(torch.where(touched, b1 * m + (1 - b1) * g, m))
            v.copy_(torch.where(touched, b2 * v + (1 - b2) * g * g, v))
            n = t.clamp(min=1)
            move = (m / (1 - b1**n)) / ((v / (1 - b2**n)).sqrt() + 1e-8)
            p -= torch.where(touched, self.lr * move, 0.0)


class PyramidVolume(torch.nn.Module):
    """A (C, S, S, S) volume written as a constant plus the sum of trilinearly upsampled
    grids of side S, S/2, S/4, S/8 (Mordvintsev et al. 2018, "Differentiable image
    parameterizations"): a slice's gradient reaches every coarse voxel it passes near, so
    the large-scale layout moves at every step although a step draws only a few of the S
    fine slices, and the optimiser's steps are smooth rather than per-voxel noise."""

    def __init__(self, base: torch.Tensor, size: int, start: torch.Tensor, levels: int = 4):
        super().__init__()
        self.size = size
        self.register_buffer("base", base.view(-1, 1, 1, 1))
        sides = [s for s in (size >> k for k in range(levels)) if s >= 2]
        self.grids = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(base.numel(), s, s, s)) for s in sides]
        )
        with torch.no_grad():  # the start on the coarsest grid: smooth, low-contrast
            self.grids[-1] += start - self.base

    def forward(self) -> torch.Tensor:
        out = self.base + self.grids[0]
        for g in list(self.grids)[1:]:
            up = torch.nn.functional.interpolate(
                g[None], size=(self.size,) * 3, mode="trilinear", align_corners=False
            )[0]
            out = out + up
        return out.clamp(0, 1)


def _resized(image: torch.Tensor, side: int) -> torch.Tensor:
    """The (1, C, H, W) exemplar scaled so that its shorter side is `side` pixels."""
    h, w = image.shape[2:]
    f = side / min(h, w)
    size = (max(1, round(h * f)), max(1, round(w * f)))
    return torch.nn.functional.interpolate(image, size=size, mode="bilinear", antialias=True)


def _exemplar(exemplar) -> torch.Tensor:
    """(1, C, H, W) in 0..1: C = 1 for a grey image (R = G = B), else 3. A grey exemplar
    gives a grey volume: VGG is nearly blind to some colour directions, and an RGB volume
    for a grey exemplar filled with colour noise the Grams did not remove."""
    from convlens.images import load_image

    rgb = torch.from_numpy(np.array(load_image(exemplar))).permute(2, 0, 1)[None].float() / 255
    grey = bool((rgb[:, :1] == rgb).all())
    return rgb[:, :1] if grey else rgb


def solid_texture(
    exemplar: str | os.PathLike | np.ndarray,
    size: int = 64,
    steps: int = 200,
    per_axis: int = 2,
    lr: float = 0.02,
    zoom: float = 2.0,
    seed: int = 0,
    features: SliceFeatures | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> SolidResult:
    """Optimise a size^3 volume (a PyramidVolume, SparseAdam steps of `lr`) so that its
    slices match the exemplar's Grams; each step draws `per_axis` random slices per axis.

    The exemplar is first scaled so that its shorter side is `zoom` x `size` pixels, so the
    texture's elements have a size a slice can hold (a 512-pixel brick photograph is seen at
    128 pixels for a 64^3 cube: several bricks per slice, not part of one). The start is the
    exemplar's colours at random voxels of the coarsest grid (its colours, no structure).
    """
    if not 8 <= size <= MAX_SIZE:
        raise ConvlensError(f"size {size}: must be in 8..{MAX_SIZE}")
    if not 0.25 <= zoom <= 16:
        raise ConvlensError(f"zoom {zoom}: must be in 0.25..16")
    image = _resized(_exemplar(exemplar), max(16, round(zoom * size)))
    features = features or SliceFeatures()
    rgb = (lambda x: x.expand(-1, 3, -1, -1)) if image.shape[1] == 1 else (lambda x: x)
    targets = style_targets(features, rgb(image))
    gen = torch.Generator().manual_seed(seed)
    pixels = image[0].flatten(1)
    coarse = max(2, size >> 3)
    start = pixels[:, torch.randint(0, pixels.shape[1], (coarse**3,), generator=gen)]
    volume = PyramidVolume(pixels.mean(1), size, start.reshape(-1, coarse, coarse, coarse))
    adam = SparseAdam(list(volume.parameters()), lr)
    losses, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        volume.zero_grad()
        loss = slice_loss(rgb(random_slices(volume(), per_axis, gen)), features, targets)
        loss.backward()
        adam.step()
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    with torch.no_grad():
        cube = match_histogram(volume(), pixels).expand(3, -1, -1, -1)
    return SolidResult(
        cube.permute(1, 2, 3, 0).contiguous().numpy(), losses, time.perf_counter() - t0
    )


def match_histogram(volume: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Each channel's values replaced, rank for rank, by the exemplar's (C, N) pixel values
    (Heeger & Bergen 1995). Grams do not pin the grey-level histogram: a 32^3 brick cube after
    80 steps had std 0.068 and 1st..99th percentiles 0.30..0.60 against the exemplar's 0.058
    and 0.37..0.58; this puts back the exemplar's levels and keeps the layout."""
    flat = volume.flatten(1)
    out = torch.empty_like(flat)
    q = torch.linspace(0, 1, flat.shape[1])
    for c in range(flat.shape[0]):
        order = flat[c].argsort()
        out[c, order] = torch.quantile(pixels[c][:: max(1, pixels.shape[1] // 100_000)], q)
    return out.view_as(volume)


def save_solid(result: SolidResult, path: str | os.PathLike) -> list:
    """PATH (.npz: `volume` uint8 (S, S, S, 3), `losses`), PATH's stem _axis0/1/2.png and
    _slices.png (middle slices), and _sweep.gif (slices along axis 0)."""
    from pathlib import Path

    from convlens.volumes.render import save_slices, save_sweep_gif

    path = Path(path)
    cube = (np.clip(result.volume, 0, 1) * 255 + 0.5).astype(np.uint8)
    np.savez_compressed(path, volume=cube, losses=np.asarray(result.losses, np.float32))
    stem = path.with_suffix("")
    pictures = save_slices(result.volume, stem)
    gif = save_sweep_gif(result.volume, stem.with_name(f"{stem.name}_sweep.gif"))
    return [path, *pictures, gif]


def output_paths(path: str | os.PathLike) -> list:
    """Every file `save_solid` writes for PATH (checked before any work)."""
    from pathlib import Path

    path = Path(path)
    stem = path.with_suffix("")
    names = ["_axis0.png", "_axis1.png", "_axis2.png", "_slices.png", "_sweep.gif"]
    return [path, *(stem.with_name(stem.name + n) for n in names)]
