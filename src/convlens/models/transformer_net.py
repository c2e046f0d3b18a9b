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

ARCH = "johnson-transformer"


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
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ConvlensError(f"the network needs sides that are multiples of 4, not {w}x{h}")
        y = self.decoder(self.residual(self.encoder(x)))
        return torch.sigmoid(self.out(F.pad(y, [4] * 4, mode="reflect")))


def save_transformer_net(model: TransformerNet, path: str | os.PathLike, **info) -> None:
    """Atomic save (temporary file, then rename): a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    state = {"arch": ARCH, "config": {"width": model.width}, "state_dict": model.state_dict()}
    torch.save({**state, **info}, tmp)
    os.replace(tmp, path)


def load_transformer_net(path: str | os.PathLike) -> TransformerNet:
    """A trained network from `save_transformer_net`'s file, in eval mode."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConvlensError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not this format"
        raise ConvlensError(f"{path}: not a convlens style network ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("arch") != ARCH:
        raise ConvlensError(f"{path}: not a convlens style network (train one with train-fast)")
    model = TransformerNet(**data["config"])
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as e:
        raise ConvlensError(f"{path}: weights do not fit the network ({e})") from None
    return model.eval()


def _register() -> None:
    from convlens.models.registry import InputFormat, ModelEntry, Weights, register

    register(
        ModelEntry(
            name=ARCH,
            tasks=("style-network",),
            about="one network per style (Johnson et al. 2016, instance norm); trained by you "
            "with `convlens stylize-train`",
            load=load_transformer_net,
            build=TransformerNet,
            input=InputFormat(None, value_range=1.0, note="sides multiples of 4"),
            weights=Weights(None, licence="-", source="none: trained by you (stylize-train)"),
        )
    )


_register()
