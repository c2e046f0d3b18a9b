"""Feed-forward style transfer: one network pass per photo instead of hundreds of steps.

    from convlens.style.fast import FastStylizer
    st = FastStylizer()                                   # any painting (Ghiasi et al. 2017)
    st.stylize("photo.jpg", "starry_night.jpg", strength=0.8).save("out.png")
    FastStylizer("wave.pt").stylize("photo.jpg")          # a network trained by train_fast

Two kinds of network:

* arbitrary style (default): Magenta's style predictor turns each painting into a 100-number
  style vector (a centre square at 256 px, as it was trained), the transformer paints the photo
  with it. `strength` interpolates the style vector with the photo's own (0: the photo as the
  network sees itself, 1: the painting); several paintings blend as the weighted mean of their
  vectors.
* one network per style (Johnson et al. 2016, `train_fast`): the style is in the weights;
  `strength` mixes the output with the photo pixel by pixel; no blends.

The photo is processed at `size` px on its long side (rounded to a multiple of 4 by reflect
padding, cropped after): the output has that size. Colour preservation keeps the output's
luminance with the photo's chroma (YIQ). Video: `convlens.style.fast_video`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convlens.errors import ConvlensError
from convlens.images import ImageInput
from convlens.models.devices import resolve_device
from convlens.style import imaging
from convlens.style.plan import available_bytes

PREDICT_SIDE = 256  # the style predictor's training input
MIN_SIZE, MAX_SIZE = 32, 8192
BYTES_PER_PIXEL = 400  # peak memory per output pixel of the transformer (337 measured at 1024 px)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_size(size: int, batch: int = 1, device: torch.device | None = None) -> None:
    """ConvlensError for a size out of [MIN_SIZE, MAX_SIZE] or one whose activations do not fit
    in half of the memory the device has free."""
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConvlensError(f"size {size!r} is out of range [{MIN_SIZE}, {MAX_SIZE}]")
    need = BYTES_PER_PIXEL * size * size * batch
    have = available_bytes(device or torch.device("cpu"))
    if need > 0.5 * have:
        raise ConvlensError(
            f"size {size} needs about {need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB is free"
        )


def check_strength(strength: float) -> float:
    if not isinstance(strength, int | float) or not 0.0 <= strength <= 1.0:
        raise ConvlensError(f"strength {strength!r} is out of range [0, 1]")
    return float(strength)


def to_batch(img: np.ndarray, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(1, 3, H', W') in [0, 1] with the long side `size`, reflect-padded to multiples of 4;
    and the (h, w) to crop the output back to."""
    h, w = img.shape[:2]
    k = size / max(h, w)
    hw = (max(4, round(h * k)), max(4, round(w * k)))
    x = imaging.resize(imaging.to_tensor(img, "cpu"), hw)
    ph, pw = -hw[0] % 4, -hw[1] % 4
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(hw) > 4 else "replicate")
    return x, hw


def square_crop(img: np.ndarray, side: int = PREDICT_SIDE) -> torch.Tensor:
    """The centre square of an image at side x side, (1, 3, side, side) in [0, 1]."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return imaging.resize(
        imaging.to_tensor(img[top : top + s, left : left + s], "cpu"), (side, side)
    )


def keep_colours(out: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """The output's luminance with the photo's chroma."""
    return imaging.rgb(torch.cat([imaging.yiq(out)[:, :1], imaging.yiq(photo)[:, 1:]], 1))


class FastStylizer:
    """Loads the networks once; stylises photos, batches and (fast_video) video frames."""

    def __init__(
        self,
        network: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        bf16: bool | None = None,
    ):
        self.device = resolve_device(device)
        if threads:
            torch.set_num_threads(threads)
        # bfloat16 for the image network where the hardware has it (CPU: avx512_bf16/AMX):
        # 1.3x at 384 px, pixels 0.7/255 apart on average (a one-off measurement, see docs)
        self.bf16 = bf16_supported(self.device) if bf16 is None else bf16
        cl = torch.channels_last  # depthwise and small convolutions: far faster on CPU
        if network is None:
            from convlens.models.magenta_arbitrary import load_predictor, load_transformer

            self.predictor = load_predictor().to(self.device, memory_format=cl)
            self.transformer = load_transformer().to(self.device, memory_format=cl)
            self.johnson = None
        else:
            from convlens.models.transformer_net import load_transformer_net

            self.johnson = load_transformer_net(network).to(self.device, memory_format=cl)
            self.network_path = Path(network)

    @property
    def arbitrary(self) -> bool:
        return self.johnson is None

    @torch.inference_mode()
    def style_vector(self, style: ImageInput) -> torch.Tensor:
        """A painting's (1, 100) style vector."""
        if self.johnson is not None:
            raise ConvlensError(f"{self.network_path} is trained for one style: no style vectors")
        img = imaging.load_checked(style, "style image")
        return self.predictor(square_crop(img).to(self.device))

    def blend(self, styles: Sequence[ImageInput], weights: Sequence[float] | None = None):
        """The weighted mean of several paintings' style vectors (weights normalised)."""
        if not styles:
            raise ConvlensError("at least one style image is needed")
        w = np.asarray(weights if weights is not None else [1.0] * len(styles), np.float64)
        if len(w) != len(styles) or (w < 0).any() or w.sum() <= 0:
            raise ConvlensError(
                f"style weights must be {len(styles)} non-negative numbers with a positive sum"
            )
        vecs = [self.style_vector(s) * float(wi / w.sum()) for s, wi in zip(styles, w, strict=True)]
        return torch.stack(vecs).sum(0)

    @torch.inference_mode()
    def run(self, x: torch.Tensor, vec: torch.Tensor | None, strength: float = 1.0) -> torch.Tensor:
        """Stylise a batch (N, 3, H, W) in [0, 1], sides multiples of 4."""
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        if self.johnson is not None:
            with amp:
                out = self.johnson(x).float()
            return out if strength >= 1 else strength * out + (1 - strength) * x
        vec = vec.expand(x.shape[0], -1)
        if strength < 1:
            side = min(PREDICT_SIDE, *x.shape[-2:])
            own = self.predictor(
                F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
            )
            vec = strength * vec + (1 - strength) * own
        with amp:
            return self.transformer(x, vec).float()

    def stylize(
        self,
        photo: ImageInput,
        style: ImageInput | Sequence[ImageInput] = (),
        *,
        strength: float = 1.0,
        size: int = 512,
        preserve_colors: bool = False,
        style_weights: Sequence[float] | None = None,
    ) -> Image.Image:
        """One photo -> the stylised PIL image (long side `size`)."""
        return next(
            self.stylize_many(
                [photo], style, strength=strength, size=size,
                preserve_colors=preserve_colors, style_weights=style_weights,
            )
        )  # fmt: skip

    def stylize_many(
        self,
        photos: Iterable[ImageInput],
        style: ImageInput | Sequence[ImageInput] = (),
        *,
        strength: float = 1.0,
        size: int = 512,
        preserve_colors: bool = False,
        style_weights: Sequence[float] | None = None,
        batch: int = 4,
    ) -> Iterator[Image.Image]:
        """Stylised images in input order; photos of equal shape run as one batch."""
        check_strength(strength)
        check_size(size, batch, self.device)
        vec = self.prepare_style(style, style_weights)
        pending: list[tuple[torch.Tensor, tuple[int, int]]] = []
        for i, photo in enumerate(photos):
            x, hw = to_batch(imaging.load_checked(photo, f"photo {i + 1}"), size)
            if pending and (x.shape != pending[0][0].shape or len(pending) == batch):
                yield from self._flush(pending, vec, strength, preserve_colors)
                pending = []
            pending.append((x, hw))
        if pending:
            yield from self._flush(pending, vec, strength, preserve_colors)

    def prepare_style(self, style, style_weights) -> torch.Tensor | None:
        """The style vector for arbitrary style; None (checked) for a per-style network."""
        styles = (
            [style]
            if isinstance(style, str | os.PathLike | Image.Image | np.ndarray)
            else list(style)
        )
        if self.johnson is not None:
            if styles:
                raise ConvlensError(
                    f"{self.network_path} is trained for one style; give no style image"
                )
            return None
        return self.blend(styles, style_weights)

    def _flush(self, pending, vec, strength, preserve_colors) -> Iterator[Image.Image]:
        x = torch.cat([p[0] for p in pending])
        out = self.run(x, vec, strength)
        if preserve_colors:
            out = keep_colours(out, x.to(out.device))
        for o, (_, (h, w)) in zip(out, pending, strict=True):
            yield imaging.to_pil(o[None, :, :h, :w])
