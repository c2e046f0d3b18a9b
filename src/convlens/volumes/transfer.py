"""Volumetric style transfer with VGG19 inflated to 3-D (registry "vgg19-3d"): a content
volume keeps its inflated-VGG features at one layer while the Grams of its 3-D features take
those of a style, which is either a 2-D image (Grams of the *2-D* VGG19's features, the same
weights before inflation, so the channels match) or another volume (Grams of its 3-D features).

    from convlens.volumes import prepare_volume
    from convlens.volumes.transfer import style_volume
    content = prepare_volume("head_ct.npz", shape=(24, 48, 48))      # 0..1, CT window
    result = style_volume(content, "great_wave.jpg", steps=60)
    result.volume                                                   # (24, 48, 48) in 0..1

Volumes are grey (one value per voxel, fed to all three colour channels as vgg19-3d does), so
a colour style image is taken as its luminance. The cost is that of convlens.style.losses
(StyleLoss on position-normalised Grams, ContentLoss), each layer relative to its cost
against zero features so no layer's scale drowns the others.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from convlens.errors import ConvlensError
from convlens.nd.layers import SequentialTaps
from convlens.style.losses import ContentLoss, StyleLoss

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")
CONTENT_LAYER = "relu2_1"


@dataclass
class TransferResult:
    volume: np.ndarray  # float32 (D, H, W), 0..1
    content: np.ndarray  # the content volume it started from
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _grey_to_input(x: torch.Tensor, net) -> torch.Tensor:
    """(N, 1, *spatial) 0..1 -> the network's normalised 3-channel input (grey in R, G, B)."""
    shape = (1, 3) + (1,) * (x.dim() - 2)
    return (x.expand(-1, 3, *x.shape[2:]) - net.mean.view(shape)) / net.std.view(shape)


def style_grams(style, net, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Position-normalised Grams of the style: a 2-D image through the 2-D VGG19 (the weights
    vgg19-3d was inflated from), or a volume array / volume file through `net` itself."""
    from convlens.models import registry

    if isinstance(style, np.ndarray) and style.ndim == 3 and style.shape[-1] not in (3, 4):
        x = torch.from_numpy(np.asarray(style, np.float32))[None, None]
        taps = SequentialTaps(net.features, layers)
    else:
        from convlens.images import load_image

        rgb = torch.from_numpy(np.array(load_image(style))).float().permute(2, 0, 1)[None] / 255
        x = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        vgg2d = registry.get("vgg19", task="style-backbone").load(pool="max")  # as vgg19-3d
        taps = SequentialTaps(vgg2d.features, layers)
    with torch.no_grad():
        maps = taps(_grey_to_input(x, net))
    return {n: StyleLoss.get_target(m) for n, m in maps.items()}


def style_volume(
    content: np.ndarray,
    style: str | os.PathLike | np.ndarray,
    steps: int = 60,
    lr: float = 0.02,
    style_weight: float = 1.0,
    style_layers: Sequence[str] = STYLE_LAYERS,
    content_layer: str = CONTENT_LAYER,
    net=None,
    callback: Callable[[int, float], None] | None = None,
) -> TransferResult:
    """Adam steps of `lr` on the content volume (D, H, W, 0..1) towards `style` (a 2-D image
    path/array, or a volume (D, H, W) 0..1 / a volume file) while keeping its features at
    `content_layer`; cost = style_weight * sum of relative style costs + relative content."""
    from convlens.models import registry

    content = np.asarray(content, np.float32)
    if content.ndim != 3 or min(content.shape) < 4:
        raise ConvlensError(f"content volume must be (D, H, W) of at least 4 per axis, "
                            f"got shape {content.shape}")  # fmt: skip
    from convlens.volumes.io import VOLUME_SUFFIXES, prepare_volume

    if isinstance(style, str | os.PathLike) and str(style).lower().endswith(VOLUME_SUFFIXES):
        style = prepare_volume(style, content.shape)
    layers = tuple(dict.fromkeys((*style_layers, content_layer)))
    net = net or registry.get("vgg19-3d", task="volume-backbone").load(last=_deepest(layers))
    net = net.eval().requires_grad_(False)
    taps = SequentialTaps(net.features, layers)
    targets = style_grams(style, net, style_layers)
    x = torch.from_numpy(content)[None, None].clone()
    with torch.no_grad():
        maps = taps(_grey_to_input(x, net))
    terms = [(n, StyleLoss(targets[n]), style_weight) for n in style_layers]
    terms.append((content_layer, ContentLoss(maps[content_layer]), 1.0))
    terms = [(n, loss, w / float(loss(torch.zeros_like(maps[n])))) for n, loss, w in terms]
    x.requires_grad_(True)
    adam = torch.optim.Adam([x], lr=lr)
    losses, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        adam.zero_grad()
        maps = taps(_grey_to_input(x, net))
        loss = sum(w * term(maps[n]) for n, term, w in terms)
        loss.backward()
        adam.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    return TransferResult(x.detach()[0, 0].numpy(), content, losses, time.perf_counter() - t0)


def _deepest(layers: Sequence[str]) -> str:
    """The deepest of VGG layer names such as relu2_1, conv3_4 (block, then index)."""
    return max(layers, key=lambda n: tuple(int(d) for d in re.findall(r"\d+", n)))


def output_paths(path: str | os.PathLike) -> list:
    """Every file `save_transfer` writes for PATH (checked before any work)."""
    from pathlib import Path

    path = Path(path)
    stem = path.with_suffix("")
    return [path, *(stem.with_name(stem.name + n) for n in ("_slices.png", "_sweep.gif"))]


def save_transfer(result: TransferResult, path: str | os.PathLike) -> list:
    """PATH (.npz: `volume` float32 0..1, `losses`), PATH's stem _slices.png (content's
    orthogonal slices above the result's, one grey scale) and _sweep.gif (axis 0)."""
    from PIL import Image

    from convlens.volumes.render import save_sweep_gif, triplet_image

    path, slices, gif = output_paths(path)
    np.savez_compressed(path, volume=result.volume, losses=np.asarray(result.losses, np.float32))
    rows = [triplet_image(v, window=(0, 1), scale=3) for v in (result.content, result.volume)]
    sheet = np.full((rows[0].shape[0] * 2 + 6, rows[0].shape[1], 3), 255, np.uint8)
    sheet[: rows[0].shape[0]] = rows[0]
    sheet[rows[0].shape[0] + 6 :] = rows[1]
    Image.fromarray(sheet).save(slices)
    save_sweep_gif(result.volume, gif, window=(0, 1))
    return [path, slices, gif]
