"""Reading an ONNX file's layers and weights, to rebuild the network as a torch module.

This is not an ONNX interpreter: `read_onnx_graph` folds every node whose inputs are all
constants (initialisers, Constant, DequantizeLinear, Reshape of weights) into plain float32
arrays, and returns the remaining compute nodes in graph order with their attributes. A
module's loader then walks those nodes, checks each is the layer it expects, and copies the
weights into its own named parameters (see sface.py).

Block-quantised weights (ONNX opset 21 DequantizeLinear with `block_size`) are dequantised
exactly as the ONNX reference and onnxruntime do: (int(x) - int(zero_point)) * scale in
float32, each scale covering `block_size` consecutive elements along `axis`.

`runnable_copy` writes a copy of a model that onnxruntime accepts when the original lists
its weights as graph inputs too (old exporters did; onnxruntime then refuses to load it),
with a dynamic batch axis: the reference the ports are tested against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Nodes evaluated at load time when all their inputs are constants.
_FOLDABLE = ("Constant", "DequantizeLinear", "Reshape")


class OnnxGraphError(ValueError):
    """The file is not the network a loader expects (message says which node and why)."""


@dataclass
class OnnxNode:
    """One compute node: op type, name, input/output value names and attributes."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class OnnxGraph:
    """Compute nodes in graph order; constants (float32 arrays, folded) by value name."""

    nodes: list[OnnxNode]
    constants: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple
    output_name: str  # the first (or only) output
    output_names: tuple[str, ...] = ()  # every output, in graph order

    def constant(self, node: OnnxNode, index: int) -> np.ndarray:
        """The constant feeding input `index` of `node`, or an error naming the node."""
        if index >= len(node.inputs) or node.inputs[index] not in self.constants:
            raise OnnxGraphError(f"node {node.name!r} ({node.op}): input {index} is not a weight")
        return self.constants[node.inputs[index]]


def dequantize_linear(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block_size: int
) -> np.ndarray:
    """ONNX DequantizeLinear: per-tensor, per-axis (block_size 0) or blocked, as float32."""
    x = np.asarray(x)
    scale = np.asarray(scale, np.float32)
    zp = np.zeros((), np.int32) if zero_point is None else np.asarray(zero_point, np.int32)
    if scale.ndim == 0:  # per tensor
        return ((x.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)
    axis = axis % x.ndim
    if block_size == 0:  # per axis: a 1-d scale along `axis`
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape) if zp.ndim else zp
    else:  # blocked: scale has x's shape with ceil(n / block_size) along `axis`
        n = x.shape[axis]
        if scale.shape[axis] != -(-n // block_size):
            raise OnnxGraphError(
                f"scale shape {scale.shape} does not cover {x.shape} in blocks of {block_size}"
            )
        scale = np.repeat(scale, block_size, axis=axis).take(range(n), axis=axis)
        if zp.ndim:
            zp = np.repeat(zp, block_size, axis=axis).take(range(n), axis=axis)
    return ((x.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)


def _attrs(node) -> dict:
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if a.type == a.TENSOR:
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        out[a.name] = value
    return out


def _fold(op: str, attrs: dict, args: list[np.ndarray | None]) -> np.ndarray:
    if op == "Constant":
        if "value" not in attrs:
            raise OnnxGraphError(f"Constant with {sorted(attrs)} is not supported")
        return np.asarray(attrs["value"])
    if op == "Reshape":
        return args[0].reshape([int(d) for d in args[1]])
    zero_point = args[2] if len(args) > 2 else None
    return dequantize_linear(
        args[0], args[1], zero_point, attrs.get("axis", 1), attrs.get("block_size", 0)
    )


def read_onnx_graph(
    path: str | os.PathLike, max_inputs: int = 1, max_outputs: int = 1
) -> OnnxGraph:
    """The compute nodes and folded float32 weights of an ONNX model file.

    Raises OSError when the file cannot be read and OnnxGraphError when it does not have 1 to
    `max_inputs` inputs (input_name/input_shape: the first; a transformer conditioned on a style
    vector has two) and 1 to `max_outputs` outputs (a detector has several heads).
    """
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(os.fspath(path))
    except OSError:
        raise
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise OnnxGraphError(f"not an ONNX model ({type(e).__name__})") from None
    graph = model.graph
    values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes: list[OnnxNode] = []
    for node in graph.node:
        attrs = _attrs(node)
        if node.op_type in _FOLDABLE and all(i in values for i in node.input if i):
            values[node.output[0]] = _fold(node.op_type, attrs, [values[i] for i in node.input])
            continue
        nodes.append(OnnxNode(node.op_type, node.name, list(node.input), list(node.output), attrs))
    # Old exporters list weights (even ones no node reads any more) as graph inputs too.
    used = {name for node in nodes for name in node.inputs}
    real_inputs = [i for i in graph.input if i.name not in values and i.name in used]
    if not 1 <= len(real_inputs) <= max_inputs or not 1 <= len(graph.output) <= max_outputs:
        raise OnnxGraphError(
            f"expected at most {max_inputs} input(s) and {max_outputs} output(s), found "
            f"{len(real_inputs)} and {len(graph.output)}"
        )
    dims = real_inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
    constants = {k: np.asarray(v, np.float32) for k, v in values.items() if v.dtype.kind == "f"}
    outputs = tuple(o.name for o in graph.output)
    return OnnxGraph(nodes, constants, real_inputs[0].name, shape, outputs[0], outputs)


def runnable_copy(
    src: str | os.PathLike, dest_dir: str | os.PathLike, any_size: bool = False
) -> Path:
    """A copy of `src` that onnxruntime loads, with a dynamic batch axis; returns its path.

    Graph inputs that are initialisers or that no node reads (weights listed as inputs by
    old exporters) are removed, and the first dimension of the input and output becomes "batch".
    A blocked DequantizeLinear whose one block covers the whole tensor (YuNet's biases) becomes
    per-tensor (scalar scale), the same arithmetic; onnxruntime refuses it as it is.
    any_size: the input's height and width and the outputs' second axis become dynamic too
    (a fully convolutional detector; its outputs are (1, cells, C)).
    """
    import onnx

    model = onnx.load(os.fspath(src))
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    inits = {i.name: i for i in graph.initializer}
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.input if i.name not in weights and i.name in used]
    del graph.input[:]
    graph.input.extend(keep)
    for node in graph.node:
        scale = inits.get(node.input[1]) if node.op_type == "DequantizeLinear" else None
        if scale is not None and int(np.prod(scale.dims)) == 1:
            kept = [a for a in node.attribute if a.name not in ("block_size", "axis")]
            del node.attribute[:]
            node.attribute.extend(kept)
            for name in node.input[1:]:  # a scalar scale (and zero point): per tensor
                del inits[name].dims[:]
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not any_size:
            dims[0].dim_param = "batch"
        elif any_size:
            for axis in (2, 3) if value in graph.input else (1,):
                dims[axis].dim_param = f"d{axis}"
    dest = Path(dest_dir) / Path(src).name
    onnx.save(model, os.fspath(dest))
    return dest


def load_ported_network(
    path: str | os.PathLike,
    build,
    state_from_graph,
    what: str,
    known_sha256: dict[str, str],
    id_prefix: str,
    **read_options,
):
    """A network ported from an ONNX file, in eval mode on the CPU: `build(model_id=...)` made
    on the meta device and given `state_from_graph(read_onnx_graph(path))`. The model_id is the
    known one for a known file's sha256, else `id_prefix:stem-hash`. A file that cannot be read
    or is not this network (`what`) raises ConvlensError naming it."""
    import hashlib

    import torch

    from convlens.errors import ConvlensError

    path = Path(path)
    if not path.is_file():
        raise ConvlensError(f"{path}: no such model file")
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        state = state_from_graph(read_onnx_graph(path, **read_options))
    except OSError as e:
        raise ConvlensError(f"{path}: cannot read ({e.strerror or e})") from None
    except OnnxGraphError as e:
        raise ConvlensError(f"{path}: not {what} ({e})") from None
    model_id = known_sha256.get(digest, f"{id_prefix}:{path.stem}-{digest[:12]}")
    with torch.device("meta"):
        model = build(model_id=model_id)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
