"""dlib's 128-d face encoder (dlib_face_recognition_resnet_model_v1) as a torch module.

The network is dlib's `anet_type` (tools/python/src/face_recognition.cpp, dlib 20.0.1):

    input_rgb_image_sized<150>          (x - mean_rgb) / 256, RGB
    con<32,7,7,2,2> affine relu max_pool<3,3,2,2>
    alevel4: 3 x ares<32>               residual blocks, 3x3 convs
    alevel3: ares_down<64>,  3 x ares<64>
    alevel2: ares_down<128>, 2 x ares<128>
    alevel1: ares_down<256>, 2 x ares<256>
    alevel0: ares_down<256>
    avg_pool_everything, fc_no_bias<128>, loss_metric (no normalisation at inference)

where a block is con-affine-relu-con-affine, `ares` adds the block's input and applies relu,
and `ares_down` starts with a stride-2 conv and adds the input average-pooled 2x2/2.
Its quirks, reproduced exactly:
- dlib pads a conv or pool only when its stride is 1 (then kernel//2); stride-2 layers use
  no padding, so 150 -> 72 (conv) -> 35 (max pool);
- `add_prev` adds tensors of different shapes: each output dimension is the larger of the two,
  and the part only one tensor covers is taken from it alone (zeros for the other). The skip
  path gains channels that way (32 -> 64, ...), and in alevel1 the 3x3 block output is added
  to the 4x4 pooled input, so the stage continues at 4x4;
- affine layers are frozen batch norms: per-channel scale and shift (trainable here).

`load_dlib_face_resnet` reads dlib's .dat file directly (see dlib_format.py), with no dlib
call, and caches the converted weights keyed by the file's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.face_models import face_encoder_extras, open_set_threshold
from convlens.models.files import save_torch_file
from convlens.models.registry import InputFormat, Weights, register_model

MODEL_ID = "dlib_face_recognition_resnet_model_v1"
# sha256 of the file shipped by face-recognition-models 0.3.0 (embeddings keep MODEL_ID).
KNOWN_SHA256 = {"55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30": MODEL_ID}
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)  # input_rgb_image_sized defaults, also in the file
CHIP_SIZE = 150
CACHE_FORMAT = "convlens-dlib-resnet-weights-v1"

# The default τ a gallery of this encoder uses until it is calibrated, chosen from data (not
# dlib's folklore 0.6, which names 39% of ORL's strangers): benchmarks/open_set.py,
# docs/faces/README.md.
SHIPPED_THRESHOLD = open_set_threshold(0.452, dir_median=0.531)
WEIGHTS = Weights(
    "face_recognition_models",
    ("models", f"{MODEL_ID}.dat"),
    licence="CC0-1.0",
    source="dlib (Davis King), trained on ~3M faces",
)

# (channels, number of blocks, first block downsamples) from the input side: alevel4..alevel0
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


class Affine(nn.Module):
    """dlib's affine_ layer in conv mode: y = x * weight[c] + bias[c] (a frozen batch norm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, self.channels, 1, 1)
        return torch.addcmul(self.bias.view(shape), x, self.weight.view(shape))

    def extra_repr(self) -> str:
        return str(self.channels)


class AddPrev(nn.Module):
    """dlib's add_prev_: elementwise sum where each output dim is the larger of the inputs'.

    The smaller tensor is zero-padded at the end (extra channels, bottom rows, right columns).
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[1:] == b.shape[1:]:
            return a + b
        size = [max(sa, sb) for sa, sb in zip(a.shape[1:], b.shape[1:], strict=True)]
        return _pad_to(a, size) + _pad_to(b, size)


def _pad_to(t: torch.Tensor, size: list[int]) -> torch.Tensor:
    dc, dh, dw = (s - d for s, d in zip(size, t.shape[1:], strict=True))
    return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t


def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Conv2d:
    # dlib's default padding: kernel//2 when the stride is 1, else none.
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2 if stride == 1 else 0)


def _pool_settings(m: nn.MaxPool2d | nn.AvgPool2d) -> dict:
    def pair(v):
        return tuple(v) if isinstance(v, tuple | list) else (v, v)

    return {"kernel": pair(m.kernel_size), "stride": pair(m.stride), "padding": pair(m.padding)}


class ResidualBlock(nn.Module):
    """dlib's ares (down=False) or ares_down (down=True, stride-2 conv, 2x2 avg-pooled skip)."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = _conv(c_in, c_out, 3, 2 if down else 1)
        self.affine1 = Affine(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv(c_out, c_out, 3, 1)
        self.affine2 = Affine(c_out)
        self.skip = nn.AvgPool2d(2, 2) if down else nn.Identity()
        self.add = AddPrev()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(self.relu1(self.affine1(self.conv1(x)))))
        return self.relu(self.add(y, self.skip(x)))


class DlibFaceResNet(nn.Module):
    """Float RGB chips (N, 3, 150, 150), values 0..255 -> (N, 128) float32 embeddings."""

    def __init__(self, model_id: str = MODEL_ID):
        super().__init__()
        self.model_id = model_id
        self.register_buffer("mean_rgb", torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1))
        self.stem = nn.Sequential(
            OrderedDict(
                conv=_conv(3, 32, 7, 2),
                affine=Affine(32),
                relu=nn.ReLU(),
                pool=nn.MaxPool2d(3, 2, padding=0),
            )
        )
        c_in = 32
        for i, (c, n, down) in enumerate(STAGES, start=1):
            blocks = [ResidualBlock(c_in if j == 0 else c, c, down and j == 0) for j in range(n)]
            self.add_module(f"stage{i}", nn.Sequential(*blocks))
            c_in = c
        self.pool = nn.AdaptiveAvgPool2d(1)  # dlib's avg_pool_everything
        self.fc = nn.Linear(c_in, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last runs the convs ~20% faster on CPU; chips permuted from (N, H, W, 3)
        # arrays are channels_last already, so this copies nothing for them.
        x = ((x - self.mean_rgb) * (1.0 / 256.0)).contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        x = self.stage5(self.stage4(self.stage3(self.stage2(self.stage1(x)))))
        return self.fc(self.pool(x).flatten(1))

    def layer_plan(self) -> list[tuple[str, str | None, dict]]:
        """dlib's layer sequence from the input up, each as (kind, module name, settings).

        Tag and skip layers are ("tag_or_skip", None, {}); used to match a parsed .dat file.
        """
        plan: list[tuple[str, str | None, dict]] = []

        def conv(name: str, m: nn.Conv2d) -> None:
            settings = {
                "num_filters": m.out_channels,
                "kernel": tuple(m.kernel_size),
                "stride": tuple(m.stride),
                "padding": tuple(m.padding),
                "in_channels": m.in_channels,
            }
            plan.append(("con", name, settings))
            plan.append(("affine", name.replace("conv", "affine"), {"channels": m.out_channels}))

        tag = ("tag_or_skip", None, {})
        conv("stem.conv", self.stem.conv)
        plan.append(("relu", "stem.relu", {}))
        plan.append(("max_pool", "stem.pool", _pool_settings(self.stem.pool)))
        for i in range(1, len(STAGES) + 1):
            for j, block in enumerate(getattr(self, f"stage{i}")):
                name = f"stage{i}.{j}"
                plan.append(tag)  # tag1: the block's input
                conv(f"{name}.conv1", block.conv1)
                plan.append(("relu", f"{name}.relu1", {}))
                conv(f"{name}.conv2", block.conv2)
                if block.down:  # tag2 (block output), skip1 (back to tag1), avg_pool
                    plan += [tag, tag, ("avg_pool", f"{name}.skip", _pool_settings(block.skip))]
                plan.append(("add_prev", f"{name}.add", {}))
                plan.append(("relu", f"{name}.relu", {}))
        # avg_pool_everything: a 0x0 window means "the whole input".
        plan.append(("avg_pool", "pool", {"kernel": (0, 0), "stride": (1, 1), "padding": (0, 0)}))
        plan.append(("fc", "fc", {"num_outputs": self.fc.out_features}))
        return plan


# --- loading dlib's .dat -------------------------------------------------------------------


def state_dict_from_dat(data: bytes, model: DlibFaceResNet | None = None) -> dict:
    """Convert a serialised dlib anet_type into this module's state dict (checks every layer)."""
    from convlens.models.dlib_format import DlibFormatError, parse_dlib_net

    net = parse_dlib_net(data)
    if model is None:
        with torch.device("meta"):
            model = DlibFaceResNet()
    plan = model.layer_plan()
    if net.loss.kind != "loss_metric":
        raise DlibFormatError(f"loss layer is {net.loss.kind}, not loss_metric")
    if net.input.params.get("size", (CHIP_SIZE, CHIP_SIZE)) != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"input size is {net.input.params['size']}, not 150x150")
    if len(net.layers) != len(plan):
        raise DlibFormatError(
            f"network has {len(net.layers)} layers; dlib's face ResNet has {len(plan)}"
        )
    mean = torch.tensor(net.input.params["mean_rgb"], dtype=torch.float32)
    state: dict[str, torch.Tensor] = {"mean_rgb": mean.view(1, 3, 1, 1)}
    for i, (layer, (kind, name, want)) in enumerate(zip(net.layers, plan, strict=True)):
        where = f"layer {i} ({name or kind})"
        if layer.kind != kind:
            raise DlibFormatError(f"{where}: found {layer.describe()}, expected {kind}")
        for key, value in want.items():
            if key in layer.params and layer.params[key] != value:
                raise DlibFormatError(f"{where}: {key} is {layer.params[key]}, expected {value}")
        if layer.params.get("disabled") or layer.params.get("relu"):
            raise DlibFormatError(f"{where}: unsupported setting {layer.describe()}")
        if kind == "con":
            weight = layer.weights["weight"]
            if weight.shape[1] != want["in_channels"] or "bias" not in layer.weights:
                raise DlibFormatError(f"{where}: filters of shape {weight.shape}")
            state[f"{name}.weight"] = _tensor(weight)
            state[f"{name}.bias"] = _tensor(layer.weights["bias"])
        elif kind == "affine":
            c = want["channels"]
            if layer.params["mode"] != "conv" or layer.weights["weight"].size != c:
                raise DlibFormatError(f"{where}: {layer.describe()}, expected {c} channels")
            state[f"{name}.weight"] = _tensor(layer.weights["weight"])
            state[f"{name}.bias"] = _tensor(layer.weights["bias"])
        elif kind == "fc":
            if layer.params["bias"] or layer.params["num_inputs"] != model.fc.in_features:
                raise DlibFormatError(f"{where}: {layer.describe()}")
            # dlib: out = x @ W with W (num_inputs, num_outputs); torch Linear stores W.T.
            state[f"{name}.weight"] = _tensor(layer.weights["weight"].T)
    return state


def _tensor(a) -> torch.Tensor:
    """A float32 tensor with its own storage, from a (read-only, maybe strided) array."""
    import numpy as np

    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _cached_state(path: Path, digest: str) -> dict:
    """The converted weights of `path` (sha256 `digest`): from the cache, else parsed."""
    from convlens.models.weights import cache_dir

    try:
        cached: Path | None = cache_dir() / f"dlib_resnet-{digest[:32]}.pt"
    except OSError:  # no writable cache: parse every time
        cached = None
    if cached is not None and cached.exists():
        try:
            payload = torch.load(cached, map_location="cpu", weights_only=True)
            if payload.get("format") == CACHE_FORMAT and payload.get("sha256") == digest:
                return payload["state_dict"]
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt below
            pass
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConvlensError(f"{path}: cannot read ({e.strerror or e})") from None
    from convlens.models.dlib_format import DlibFormatError

    try:
        state = state_dict_from_dat(data)
    except DlibFormatError as e:
        raise ConvlensError(f"{path}: not dlib's face recognition ResNet model ({e})") from None
    payload = {"format": CACHE_FORMAT, "sha256": digest, "state_dict": state}
    if cached is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs a re-parse next time
            save_torch_file(payload, cached)
    return state


@register_model(
    name="dlib-resnet",
    aliases=("dlib_resnet", "face"),
    tasks=("face-encoder", "inspectable"),
    about="dlib's 128-d ResNet face encoder (2017), ported to torch",
    build=DlibFaceResNet,
    input=InputFormat(
        (CHIP_SIZE, CHIP_SIZE),
        note="aligned face chips (dlib 5-point); normalised inside",
    ),
    weights=WEIGHTS,
    layer_presets={"inspect": ("stage1", "stage3", "stage5")},
    extras=face_encoder_extras(CHIP_SIZE, "dlib-5", MODEL_ID, SHIPPED_THRESHOLD),
)
def load_dlib_face_resnet(path: str | os.PathLike | None = None) -> DlibFaceResNet:
    """dlib's face encoder from its .dat file (default: the one face-recognition-models ships).

    Returns the module in eval mode on the CPU. The first load parses the .dat file; later
    loads read the converted weights from convlens' cache. A file that is not this network
    raises ConvlensError naming it.
    """
    path = Path(path) if path is not None else WEIGHTS.require()
    if not path.is_file():
        raise ConvlensError(f"{path}: no such model file")
    digest = _sha256(path)
    state = _cached_state(path, digest)
    model_id = KNOWN_SHA256.get(digest, f"dlib_resnet:{path.stem}-{digest[:12]}")
    with torch.device("meta"):
        model = DlibFaceResNet(model_id=model_id)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
