"""A small ConvNet face encoder to train from scratch, cheap enough for a 2-core CPU.

Takes the same input as every convlens face encoder (float RGB chips (N, 3, 150, 150), values
0..255) but first resizes them to `input_size` (64 by default): the work per image is about
1/5 of full resolution and the receptive field still covers the whole face.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convlens.models.face_models import load_trained
from convlens.models.registry import InputFormat, register_model


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


def _block(cin: int, cout: int, convs: int = 2) -> nn.Sequential:
    layers = _conv(cin, cout)
    for _ in range(convs - 1):
        layers += _conv(cout, cout)
    return nn.Sequential(*layers)


class SmallConvNet(nn.Module):
    """A 3x3 conv stem and three stages of two 3x3 convs (each conv + BN + ReLU), a 2x2 max-pool
    after each, then a linear embedding of the (input_size / 16)^2 grid, L2-normalised when
    `normalize`. At 64x64 and width 16: about 90 MFLOPs per chip and 0.55 M parameters.

    Submodules are named stem, stage1..stage3, embed, so `train_from` can freeze by name.
    """

    def __init__(
        self,
        embedding_dim: int = 128,
        normalize: bool = True,
        input_size: int = 64,
        width: int = 16,
        model_id: str = "small_convnet-untrained",
    ) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.normalize = bool(normalize)
        self.embedding_dim = int(embedding_dim)
        self.model_id = model_id
        w = int(width)
        if self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, not {input_size}")
        self.stem = _block(3, w, convs=1)
        self.stage1 = _block(w, 2 * w)
        self.stage2 = _block(2 * w, 4 * w)
        self.stage3 = _block(4 * w, 8 * w)
        grid = self.input_size // 16
        self.embed = nn.Linear(8 * w * grid * grid, self.embedding_dim)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = chips.float() * (1.0 / 127.5) - 1.0
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True
            )
        for stage in (self.stem, self.stage1, self.stage2, self.stage3):
            x = F.max_pool2d(stage(x), 2)
        x = self.embed(x.flatten(1))
        return F.normalize(x, dim=1) if self.normalize else x


@register_model(
    name="small-convnet",
    aliases=("small_convnet",),
    tasks=("face-encoder", "inspectable"),
    about="a small ConvNet face encoder to train from scratch on a CPU",
    build=SmallConvNet,
    input=InputFormat((150, 150), note="aligned face chips, resized to 64 inside"),
    layer_presets={"inspect": ("stem", "stage1", "stage2", "stage3")},
)
def _load_trained(path=None) -> SmallConvNet:
    how = "train one from scratch (convlens train)"
    return load_trained(path, "small-convnet", how)
