"""Reader for dlib's serialised DNN files (.dat), written from dlib 20.0.1's own sources.

The wire format (dlib/serialize.h, dlib/dnn/core.h, dlib/dnn/layers.h, dlib/cuda/tensor.h):

- integers are variable length: one control byte (low nibble = number of bytes that follow,
  0x80 = negative), then the magnitude's bytes, least significant first;
- a scalar float is a float_details pair: int64 mantissa, int16 exponent, value m * 2**e
  (exponents 32000/32001/32002 stand for +inf, -inf, NaN);
- a string is its length (an integer) then its bytes; a bool is the character '0' or '1';
- a tensor is version 2, four int64 dimensions (n, k, rows, cols), then raw little-endian
  float32 values; an alias_tensor is version 1 and the four dimensions only;
- a network is serialised outside-in: the loss layer (version, details), then each layer's
  version down to the input layer, then each layer's details inside-out (add_layer: details,
  three bools, then its cached tensors). Tag and skip layers (version 1) carry nothing else.

`parse_dlib_net` turns such a file into a `DlibNet`: the loss details, the input layer and
the list of layers from the input to the output, each with its hyper-parameters and weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FLOAT_INF, FLOAT_NINF, FLOAT_NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The bytes are not the dlib network this reader expects (message says where and why)."""


class Reader:
    """Sequential reader over the bytes of a dlib serialised object."""

    def __init__(self, data: bytes | memoryview):
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise DlibFormatError(f"truncated at byte {self.pos} (wanted {n} more bytes)")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def int(self) -> int:
        """A signed or unsigned integer (dlib's pack_int; the two encodings agree)."""
        at = self.pos
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at byte {at}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        """A scalar float in dlib's portable float_details form."""
        at = self.pos
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise DlibFormatError(f"old ASCII float format at byte {at} is not supported")
        mantissa, exponent = self.int(), self.int()
        if exponent == FLOAT_INF:
            return math.inf
        if exponent == FLOAT_NINF:
            return -math.inf
        if exponent == FLOAT_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def bool(self) -> bool:
        at = self.pos
        ch = self._take(1)[0]
        if ch not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{ch:02x} at byte {at}")
        return ch == ord("1")

    def string(self, max_len: int = 4096) -> str:
        at = self.pos
        n = self.int()
        if n > max_len:
            raise DlibFormatError(f"string of {n} bytes at byte {at} is implausibly long")
        raw = bytes(self._take(n))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise DlibFormatError(f"non-ASCII string at byte {at}") from None

    def peek_string(self) -> str | None:
        """The string at the current position, if one plausibly starts there; never moves."""
        pos = self.pos
        try:
            return self.string(max_len=64)
        except DlibFormatError:
            return None
        finally:
            self.pos = pos

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        at = self.pos
        v = self.int()
        if v not in allowed:
            raise DlibFormatError(f"{what}: unexpected version {v} at byte {at}")
        return v

    def tensor(self) -> np.ndarray:
        """A resizable_tensor as a read-only little-endian float32 view (n, k, rows, cols)."""
        at = self.pos
        self.version("tensor", (2,))
        shape = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise DlibFormatError(f"tensor at byte {at} has negative shape {shape}")
        count = math.prod(shape)
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4", count=count).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version("alias_tensor", (1,))
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass
class DlibLayer:
    """One computational layer: its kind ('con', 'fc', 'relu', ...), settings and weights."""

    kind: str
    params: dict = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({shown})"


TAG = DlibLayer("tag_or_skip")  # tag and skip layers look alike on the wire; the net says which


@dataclass
class DlibNet:
    loss: DlibLayer
    input: DlibLayer
    layers: list[DlibLayer]  # from the input to the output; tags/skips appear as TAG


# --- layer details -------------------------------------------------------------------------


def _lr_multipliers(r: Reader) -> None:
    for _ in range(4):  # learning rate and weight decay multipliers, weights then biases
        r.float()


def _con(r: Reader, version: str) -> DlibLayer:
    params = r.tensor().reshape(-1)
    num_filters = r.int()
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(6))
    filters = r.alias_tensor()
    biases = r.alias_tensor()
    _lr_multipliers(r)
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    use_relu = r.bool() if version == "con_6" else False
    n_filter = math.prod(filters)
    n_bias = math.prod(biases) if use_bias else 0
    if filters[0] != num_filters or params.size != n_filter + n_bias:
        raise DlibFormatError(f"con_ parameter sizes disagree ({params.size} vs {filters})")
    layer = DlibLayer(
        "con",
        {
            "num_filters": num_filters,
            "kernel": (nr, nc),
            "stride": (stride_y, stride_x),
            "padding": (pad_y, pad_x),
            "relu": use_relu,
        },
        {"weight": params[:n_filter].reshape(filters)},
    )
    if use_bias:
        layer.weights["bias"] = params[n_filter:]
    return layer


def _fc(r: Reader, version: str) -> DlibLayer:
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor().reshape(-1)
    weights = r.alias_tensor()
    biases = r.alias_tensor()
    bias_mode = r.int()  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    _lr_multipliers(r)
    use_bias = r.bool() if version == "fc_3" else True
    has_bias = bias_mode == 0 and use_bias
    n_w = num_inputs * num_outputs
    if params.size != n_w + (num_outputs if has_bias else 0) or weights[:2] != (
        num_inputs,
        num_outputs,
    ):
        raise DlibFormatError(f"fc_ parameter sizes disagree ({params.size} vs {weights})")
    # dlib computes output = input (N x num_inputs) @ W (num_inputs x num_outputs).
    layer = DlibLayer(
        "fc",
        {"num_outputs": num_outputs, "num_inputs": num_inputs, "bias": has_bias},
        {"weight": params[:n_w].reshape(num_inputs, num_outputs)},
    )
    if has_bias:
        layer.weights["bias"] = params[n_w:]
    del biases
    return layer


def _pool(kind: str):
    def read(r: Reader, version: str) -> DlibLayer:
        nr, nc, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(6))
        return DlibLayer(
            kind, {"kernel": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)}
        )

    return read


def _affine(r: Reader, version: str) -> DlibLayer:
    params = r.tensor().reshape(-1)
    gamma = r.alias_tensor()
    beta = r.alias_tensor()
    mode = r.int()  # 0 = CONV_MODE (per channel), 1 = FC_MODE (per element)
    disabled = r.bool() if version == "affine_2" else False
    n = math.prod(gamma)
    if params.size != n + math.prod(beta) or gamma != beta:
        raise DlibFormatError(f"affine_ parameter sizes disagree ({params.size} vs {gamma})")
    return DlibLayer(
        "affine",
        {"mode": "conv" if mode == 0 else "fc", "disabled": disabled, "shape": gamma},
        {"weight": params[:n], "bias": params[n:]},
    )


def _relu(r: Reader, version: str) -> DlibLayer:
    disabled = r.bool() if version == "relu_2" else False
    return DlibLayer("relu", {"disabled": disabled})


def _add_prev(r: Reader, version: str) -> DlibLayer:
    return DlibLayer("add_prev")


DETAILS = {
    "con_4": _con,
    "con_5": _con,
    "con_6": _con,
    "fc_2": _fc,
    "fc_3": _fc,
    "max_pool_2": _pool("max_pool"),
    "avg_pool_2": _pool("avg_pool"),
    "affine_": _affine,
    "affine_2": _affine,
    "relu_": _relu,
    "relu_2": _relu,
    "add_prev_": _add_prev,
}


def _layer_details(r: Reader) -> DlibLayer:
    at = r.pos
    name = r.string(max_len=64)
    if name not in DETAILS:
        raise DlibFormatError(f"unsupported layer type {name!r} at byte {at}")
    return DETAILS[name](r, name)


def _input_layer(r: Reader) -> DlibLayer:
    at = r.pos
    name = r.string(max_len=64)
    if name not in ("input_rgb_image", "input_rgb_image_sized"):
        raise DlibFormatError(f"unsupported input layer {name!r} at byte {at}")
    mean = tuple(r.float() for _ in range(3))
    params = {"mean_rgb": mean}
    if name == "input_rgb_image_sized":
        params["size"] = (r.int(), r.int())
    return DlibLayer(name, params)


def _loss_layer(r: Reader) -> DlibLayer:
    r.version("add_loss_layer", (1,))
    at = r.pos
    name = r.string(max_len=64)
    if name == "loss_metric_":
        return DlibLayer("loss_metric", {"margin": 0.1, "distance_threshold": 0.75})
    if name == "loss_metric_2":
        return DlibLayer("loss_metric", {"margin": r.float(), "distance_threshold": r.float()})
    raise DlibFormatError(f"unsupported loss layer {name!r} at byte {at}")


def parse_dlib_net(data: bytes | memoryview) -> DlibNet:
    """Parse a whole serialised dlib network (add_loss_layer at the top)."""
    r = Reader(data)
    loss = _loss_layer(r)
    # Outside-in: one version per layer until the input layer's name shows up.
    stack: list[int] = []
    while True:
        peek = r.peek_string()
        if peek is not None and peek.startswith("input"):
            break
        if len(stack) > 10_000:
            raise DlibFormatError("no input layer found")
        stack.append(r.version(f"layer {len(stack)}", (1, 2, 3)))
    if not stack or stack[-1] == 1:
        raise DlibFormatError("input layer is not wrapped in a computational layer")
    input_layer = _input_layer(r)
    layers: list[DlibLayer] = []
    innermost = len(stack) - 1
    for depth in range(innermost, -1, -1):
        version = stack[depth]
        if version == 1:  # add_tag_layer / add_skip_layer: nothing after the subnetwork
            layers.append(TAG)
            continue
        layer = _layer_details(r)
        for _ in range(3):  # setup called, gradient input stale, output/gradient disabled
            r.bool()
        r.tensor()  # x_grad
        r.tensor()  # cached_output
        if depth == innermost:
            r.tensor()  # grad_final
            if version == 3:
                r.int()  # sample expansion factor
        else:
            r.tensor()  # params_grad
        layers.append(layer)
    if r.pos != len(r.data):
        raise DlibFormatError(f"{len(r.data) - r.pos} unexpected bytes after the network")
    return DlibNet(loss=loss, input=input_layer, layers=layers)
