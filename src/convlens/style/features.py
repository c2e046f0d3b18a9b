"""Backbones for style transfer and a feature extractor that taps layers by name.

The extractor runs the backbone only up to the deepest tapped layer, with frozen weights.
Speed/quality transforms applied on a private copy of the backbone:

* ``fold_bn``: BatchNorm folded into the preceding convolution (same outputs, fewer kernels);
  the BN module becomes an Identity so its name still taps the pre-activation.
* ``avgpool``: every stride-2 convolution becomes a stride-1 convolution followed by a 2x2
  average pool (smoother gradients, no checkerboard speckle), computed as one equivalent
  (k+1)x(k+1) stride-2 convolution. For VGG19 it swaps max pooling for average pooling.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from convlens.errors import ConvlensError


@dataclass(frozen=True)
class LayerPreset:
    content: tuple[str, ...]
    style: tuple[str, ...]
    avgpool: bool
    style_weight: float  # default beta for this preset (alpha = 1)
    layer_weights: tuple[float, ...] | None = None  # lambda_l per style layer (default: equal)


def backbones() -> list[str]:
    """Style backbones in the model registry."""
    from convlens.models import registry

    return registry.names("style-backbone")


def presets(backbone: str) -> dict[str, LayerPreset]:
    """The backbone's named layer choices, from its registry entry."""
    from convlens.models import registry

    entry = registry.get(backbone, task="style-backbone")
    return {name: LayerPreset(**p) for name, p in entry.layer_presets["style"].items()}


def load_backbone(name: str, vgg_weights=None) -> nn.Module:
    from convlens.models import registry

    return registry.get(name, task="style-backbone").load(vgg_weights)


def _trunk(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone as a chain of top-level stages, in execution order."""
    from convlens.models.efficientnet_lite import EfficientNetLite0
    from convlens.models.vgg import VGG19

    if isinstance(model, EfficientNetLite0):
        stages = [("stem", model.stem)]
        stages += [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
        return stages + [("head", model.head)]
    if isinstance(model, VGG19):
        return [(f"features.{n}", m) for n, m in model.features.named_children()]
    raise ConvlensError(f"no feature trunk known for {type(model).__name__}")


def fold_batchnorm(model: nn.Module) -> None:
    """Fold every conv -> BatchNorm2d pair (in an nn.Sequential) into the conv, in place."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                with torch.no_grad():
                    conv.weight.mul_(scale.view(-1, 1, 1, 1))
                    bias = bn.bias - bn.running_mean * scale
                    if conv.bias is not None:
                        bias = bias + conv.bias * scale
                conv.bias = nn.Parameter(bias.detach())
                module._modules[b] = nn.Identity()


def blurred_strided_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A stride-2 kxk convolution -> the (k+1)x(k+1) stride-2 convolution equal to "the kxk
    convolution at stride 1, then 2x2 average pooling" (exact on even sizes), at under half the
    cost of computing the stride-1 output and pooling it."""
    k = conv.kernel_size[0]
    out = nn.Conv2d(
        conv.in_channels, conv.out_channels, k + 1, 2, k // 2,
        groups=conv.groups, bias=conv.bias is not None,
    )  # fmt: skip
    with torch.no_grad():
        w = torch.zeros_like(out.weight)
        for a in (0, 1):
            for b in (0, 1):
                w[:, :, a : a + k, b : b + k] += conv.weight / 4
        out.weight.copy_(w)
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def strided_to_avgpool(model: nn.Module) -> None:
    """Replace every stride-2 convolution by "stride-1 convolution + 2x2 average pooling"
    (computed as one blurred stride-2 convolution, `blurred_strided_conv`), and max pools by
    average pools, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and child.stride == (2, 2):
                setattr(parent, name, blurred_strided_conv(child))
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(2, 2, ceil_mode=True))


class FeatureExtractor(nn.Module):
    """Runs a backbone on (B, 3, H, W) images in [0, 1] and returns the tapped feature maps,
    in the order of ``layers``; stops after the stage holding the deepest tap."""

    def __init__(
        self,
        backbone: nn.Module,
        layers: list[str],
        fold_bn: bool = True,
        avgpool: bool = False,
    ):
        super().__init__()
        model = copy.deepcopy(backbone).eval()
        if fold_bn:
            fold_batchnorm(model)
        if avgpool:
            strided_to_avgpool(model)
        model.requires_grad_(False)
        self.layers = [resolve_layer(model, name) for name in layers]
        trunk = _trunk(model)
        last = max(_stage_of(trunk, name) for name in self.layers)
        self.normalize = model.normalize
        self.trunk = nn.Sequential(*[m for _, m in trunk[: last + 1]])
        self.backbone = model  # keeps the names; only the trunk prefix runs
        modules = dict(model.named_modules())
        self._out: dict[str, torch.Tensor] = {}
        for name in dict.fromkeys(self.layers):
            modules[name].register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            self._out[name] = output

        return hook

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._out = {}
        self.trunk(self.normalize(x))
        out, self._out = self._out, {}
        return [out[name] for name in self.layers]


def _stage_of(trunk: list[tuple[str, nn.Module]], name: str) -> int:
    for i, (prefix, _) in enumerate(trunk):
        if name == prefix or name.startswith(prefix + "."):
            return i
    raise ConvlensError(f"layer {name!r} is not on the feature path of the backbone")


def resolve_layer(model: nn.Module, name: str) -> str:
    """A module name (``blocks.4``, ``features.conv4_2``) or a VGG short name (``conv4_2``)."""
    modules = dict(model.named_modules())
    for candidate in (name, f"features.{name}"):
        if candidate and candidate in modules:
            return candidate
    examples = ", ".join(n for n in list(modules)[1:8])
    raise ConvlensError(f"no layer named {name!r} in the backbone (names like {examples}, ...)")
