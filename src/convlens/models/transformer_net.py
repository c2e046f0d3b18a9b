"""The image transformation network of Johnson, Alahi & Fei-Fei 2016 ("Perceptual losses for
real-time style transfer"), with instance normalisation (Ulyanov et al. 2016) and
upsample-then-convolve decoding (no checkerboard): one network per style, trained by
`convlens.style.train_fast`.

    9x9 conv w, 3x3/2 conv 2w, 3x3/2 conv 4w, five residual blocks of 4w,
    2x nearest + 3x3 conv 2w, 2x nearest + 3x3 conv w, 9x9 conv 3 -> sigmoid

Johnson's width is w = 32; `width` makes it lighter for CPU training (w = 16: about 1/4 of the
compute). Input and output RGB [0, 1], sides multiples of 4.

A trained network is saved as {"arch": "johnson-transformer", "config": {"width": w},
"state_dict": ..., "style": <painting file name>, "steps": n}; `load_transformer_net(path)`
rebuilds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.files import load_strict, read_torch
from convlens.models.registry import InputFormat, Weights, register_model

ARCH = "johnson-transformer"
# The input of both feed-forward stylisers, this one and Magenta's: each halves the image twice
# and doubles it back, so any size whose sides are multiples of 4, RGB in [0, 1].
INPUT = InputFormat(None, value_range=1.0, note="sides multiples of 4")


def check_sides(x: torch.Tensor, what: str) -> None:
    """A one-line error naming `what` unless x's height and width are multiples of 4."""
    h, w = x.shape[-2:]
    if h % 4 or w % 4:
        raise ConvlensError(f"{what} needs sides that are multiples of 4, not {w}x{h}")


class ConvIN(nn.Module):
    """[2x nearest upsample] -> reflect-padded conv -> instance norm -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, up: bool = False, act=True):
        super().__init__()
        self.up, self.act, self.pad = up, act, k // 2
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.norm = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.norm(self.conv(F.pad(x, [self.pad] * 4, mode="reflect")))
        return torch.relu(x) if self.act else x


class ResidualIN(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = ConvIN(c, c, 3)
        self.conv2 = ConvIN(c, c, 3, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class TransformerNet(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.width = w
        self.encoder = nn.Sequential(
            ConvIN(3, w, 9), ConvIN(w, 2 * w, 3, 2), ConvIN(2 * w, 4 * w, 3, 2)
        )
        self.residual = nn.Sequential(*[ResidualIN(4 * w) for _ in range(5)])
        self.decoder = nn.Sequential(ConvIN(4 * w, 2 * w, 3, up=True), ConvIN(2 * w, w, 3, up=True))
        self.out = nn.Conv2d(w, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sides(x, "the network")
        y = self.decoder(self.residual(self.encoder(x)))
        return torch.sigmoid(self.out(F.pad(y, [4] * 4, mode="reflect")))


def save_transformer_net(model: TransformerNet, path: str | os.PathLike, **info) -> None:
    """Atomic save (temporary file, then rename): a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    state = {"arch": ARCH, "config": {"width": model.width}, "state_dict": model.state_dict()}
    torch.save({**state, **info}, tmp)
    os.replace(tmp, path)


@register_model(
    name=ARCH,
    tasks=("style-network",),
    about="one network per style (Johnson et al. 2016, instance norm); trained by you "
    "with `convlens stylize-train`",
    build=TransformerNet,
    input=INPUT,
    weights=Weights(None, licence="-", source="none: trained by you (stylize-train)"),
)
def load_transformer_net(path: str | os.PathLike) -> TransformerNet:
    """A trained network from `save_transformer_net`'s file, in eval mode."""
    path = Path(path)
    data = read_torch(path, "a convlens style network", missing="file")
    if not isinstance(data, dict) or data.get("arch") != ARCH:
        raise ConvlensError(f"{path}: not a convlens style network (train one with train-fast)")
    return load_strict(TransformerNet(**data["config"]), data["state_dict"], path, "the network")
