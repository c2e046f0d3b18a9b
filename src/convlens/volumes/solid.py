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

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
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

        vgg = vgg or registry.get("vgg19", task="style-backbone").load(pool="avg")
        self.vgg = vgg.eval().requires_grad_(False)
        names = [n for n, _ in vgg.features.named_children()]
        self.layers = tuple(layers)
        self.stop = max(names.index(n) for n in self.layers)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.vgg.normalize(images)
        out = {}
        for i, (name, layer) in enumerate(self.vgg.features.named_children()):
            x = layer(x)
            if name in self.layers:
                out[name] = x
            if i >= self.stop:
                break
        return [out[n] for n in self.layers]


def random_slices(volume: torch.Tensor, per_axis: int, gen: torch.Generator) -> torch.Tensor:
    """(3 * per_axis, 3, S, S): slices of a (3, S, S, S) volume across each of its axes."""
    size = volume.shape[1]
    out = []
    for axis in range(3):
        for i in torch.randint(0, size, (per_axis,), generator=gen).tolist():
            out.append(volume.select(axis + 1, i))
    return torch.stack(out)


def all_slices(volume: torch.Tensor) -> torch.Tensor:
    """(3 * S, 3, S, S): every slice of a (3, S, S, S) volume across each axis."""
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


def _normalised_step(volume: torch.Tensor, lr: float) -> None:
    """x -= lr * g / rms(g over the voxels the drawn slices touched), then clamp to 0..1.

    Plain, stateless steps on purpose: a step touches only a few slices, and a per-voxel
    optimiser state (Adam's moments and bias correction) then moves rarely touched voxels by
    several times lr when they are touched again, which made the cost rise at 64^3.
    """
    with torch.no_grad():
        g = volume.grad
        touched = g != 0
        if touched.any():
            volume -= lr * g / g[touched].pow(2).mean().sqrt()
        volume.clamp_(0, 1)


def solid_texture(
    exemplar: str | os.PathLike | np.ndarray,
    size: int = 64,
    steps: int = 200,
    per_axis: int = 2,
    lr: float = 0.02,
    seed: int = 0,
    features: SliceFeatures | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> SolidResult:
    """Optimise a size^3 RGB volume (normalised gradient steps of `lr`) so that its slices
    match the exemplar's Grams."""
    from convlens.images import load_image

    if not 8 <= size <= MAX_SIZE:
        raise ConvlensError(f"size {size}: must be in 8..{MAX_SIZE}")
    image = torch.from_numpy(load_image(exemplar)).permute(2, 0, 1)[None].float() / 255.0
    features = features or SliceFeatures()
    targets = style_targets(features, image)
    gen = torch.Generator().manual_seed(seed)
    mean = image.mean((2, 3)).view(3, 1, 1, 1)
    volume = (mean + 0.1 * torch.randn(3, size, size, size, generator=gen)).clamp(0, 1)
    volume.requires_grad_(True)
    losses, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        volume.grad = None
        loss = slice_loss(random_slices(volume, per_axis, gen), features, targets)
        loss.backward()
        _normalised_step(volume, lr)
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    cube = volume.detach().permute(1, 2, 3, 0).contiguous().numpy()
    return SolidResult(cube, losses, time.perf_counter() - start)


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
