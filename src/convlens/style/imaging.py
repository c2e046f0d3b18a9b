"""Pixel helpers for style transfer: tensors in [0, 1], resizing, reflect padding, and the
YIQ colour space that luminance-only transfer (preserve colours) works in."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convlens.errors import ConvlensError
from convlens.images import ImageInput, load_image
from convlens.style.options import MIN_SIDE


def load_checked(source: ImageInput, what: str) -> np.ndarray:
    """The image as an RGB array; ConvlensError when a side is under MIN_SIDE."""
    img = load_image(source)
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        label = source if isinstance(source, str | os.PathLike) else what
        raise ConvlensError(f"{label}: {w}x{h} image is too small (minimum {MIN_SIDE} px a side)")
    return img


def to_tensor(img: np.ndarray, device) -> torch.Tensor:
    return (
        torch.from_numpy(np.array(img, copy=True))
        .permute(2, 0, 1)[None]
        .float()
        .div(255)
        .to(device)
    )


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == hw:
        return x
    # antialias only when shrinking (bilinear otherwise)
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(
        0, 1
    )


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Mirror the image's edges outwards so that the network's zero padding is not where the
    optimised pixels are (removes bright/dark seams along the border)."""
    if pad <= 0:
        return x
    p = min(pad, x.shape[-1] - 1, x.shape[-2] - 1)
    return F.pad(x, (p, p, p, p), mode="reflect")


_RGB2YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB2YIQ.to(x), x)


def rgb(yiq: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB2YIQ).to(yiq), yiq).clamp(0, 1)


def match_luminance(y_style: torch.Tensor, y_content: torch.Tensor) -> torch.Tensor:
    """Shift/scale the style luminance to the content's mean and spread (Gatys et al. 2016)."""
    ys = (y_style - y_style.mean()) / (y_style.std() + 1e-6)
    return (ys * y_content.std() + y_content.mean()).clamp(0, 1)


def compose(x: torch.Tensor, content_yiq: torch.Tensor | None) -> torch.Tensor:
    """The RGB image of the optimised variable: itself, or (preserve colours) its luminance
    joined with the content's chroma."""
    if content_yiq is None:
        return x
    return rgb(torch.cat([x, content_yiq[:, 1:]], dim=1))


def to_pil(x: torch.Tensor) -> Image.Image:
    arr = x[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5
    return Image.fromarray(arr.astype(np.uint8))
