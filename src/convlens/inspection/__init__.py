"""Looking inside a ConvNet: the image patches that excite a unit most (Zeiler & Fergus 2014).

    from convlens.inspection import inspect_units, list_layers
    report = inspect_units("face", "photos/", layers=["stage1"], units="0:16", out="grid.png")
    report = inspect_units(my_module, paths, layers=["features.8"], input_size=(224, 224),
                           preprocess=my_normalise, gradient=True, out="grid.png",
                           callback=lambda p: print(p.images_done, "/", p.total))

`model` is a registry name (`convlens models`, task "inspectable": dlib-resnet alias "face",
small-convnet, efficientnet-lite0, vgg19), a face encoder file (.dat / .pt), or any
torch.nn.Module; for a module give the input size and optionally `preprocess` (uint8 batch
(N, H, W, 3) -> float tensor (N, C, H, W); default: scale to 0..1) and `prepare` (one RGB
image -> list of network-input views; default: scale and centre-crop to the input size).

Modules: receptive (fields from the layer stack), inputs (images -> network inputs), topk and
units (the streaming pass), taps (layer hooks, gradients), models (registry -> input spec),
render (grids, JSON), report (inspect_units), layers (list_layers).
"""

from __future__ import annotations

from convlens.inspection.inputs import InputSpec
from convlens.inspection.layers import format_layers, layers_json, list_layers
from convlens.inspection.models import resolve_model
from convlens.inspection.report import InspectReport, inspect_units
from convlens.inspection.topk import parse_unit_spec
from convlens.inspection.units import ScanProgress, ScanResult, scan

__all__ = [
    "InputSpec",
    "InspectReport",
    "ScanProgress",
    "ScanResult",
    "format_layers",
    "inspect_units",
    "layers_json",
    "list_layers",
    "parse_unit_spec",
    "resolve_model",
    "scan",
]
