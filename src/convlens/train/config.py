"""TrainConfig: every setting of a training run, and the one check of their values.

The check names the offending setting by its field name and value (never a command-line
flag: the CLI adds those), so the Python API and the CLI refuse the same things.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from convlens.errors import ConvlensError

# The architecture each start trains when no model is named.
DEFAULT_MODEL = {"pretrained": "dlib-resnet", "scratch": "small-convnet"}
# Model files written before the registry name these architectures with underscores; keeping
# those names keeps a retrained encoder's model_id (arch + weights hash) unchanged.
FILE_ARCH = {"dlib-resnet": "dlib_resnet", "small-convnet": "small_convnet"}
# Only SmallConvNet is configurable; every other encoder has the shape it was designed with.
CONFIGURABLE = "small-convnet"
FIXED_EMBEDDING_DIM = 128

# The limits of every numeric setting, the one place they are written: TrainConfig.check
# enforces them and the CLI's option types are built from them.
INT_LIMITS = {
    "epochs": (1, 100_000),
    "steps": (1, 10_000_000),
    "batch_p": (2, 4096),  # a batch needs 2+ people ...
    "batch_k": (2, 4096),  # ... with 2+ chips each
    "embedding_dim": (2, 4096),
    "small_width": (1, 1024),
    "jitter": (0, 100),
    "seed": (0, 2**32 - 1),  # numpy's and torch's seeds both take it
}
# name: (low, high, low excluded, high excluded)
FLOAT_LIMITS = {
    "lr": (0.0, 10.0, True, False),
    "margin": (0.0, 10.0, True, False),
    "weight_decay": (0.0, 1.0, False, False),
    "momentum": (0.0, 1.0, False, True),
    "warmup": (0.0, 1.0, False, False),
    "grad_clip": (0.0, 1e6, False, False),
}


@dataclass
class TrainConfig:
    loss: str = "triplet"  # "triplet" or "siamese"
    mining: str = "semi-hard"  # triplet mining, see convlens.train.losses
    margin: float = 0.2
    head: str = "abs"  # siamese head: "abs" (|f(a)-f(b)|) or "chi2"
    init: str = "pretrained"  # "pretrained" (fine-tune the model's weights) or "scratch"
    model: str | None = None  # registry face encoder; default dlib-resnet / small-convnet
    embedding_dim: int = 128  # small-convnet only; dlib-resnet is 128-d
    small_input: int = 64  # small-convnet: its internal resolution
    small_width: int = 16  # small-convnet: its first-stage channels
    train_from: str | None = None  # freeze every submodule before this one
    epochs: int = 10
    steps: int | None = None  # steps per epoch; default: about one pass over the chips
    batch_p: int = 8  # people per batch
    batch_k: int = 4  # chips per person
    lr: float | None = None  # default 1e-3 from scratch, 1e-5 fine-tuning (AdamW; SGD x10)
    optimizer: str = "adamw"  # "adamw" or "sgd"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup: float = 0.05  # fraction of the steps with linearly rising lr
    schedule: str = "cosine"  # "cosine" or "constant" (after warm-up)
    grad_clip: float = 5.0  # max gradient norm; 0 = off
    augment: bool = True  # horizontal flip and a few pixels' shift
    jitter: int = 6  # max shift in pixels
    seed: int = 0
    amp: bool | None = None  # None: on for CUDA, off for CPU (CPU AMP is bf16)
    device: str = "auto"

    # Fields that may change when resuming without changing what is computed.
    RUNTIME = ("device", "amp", "epochs")

    @property
    def model_name(self) -> str:
        """The registry name of the encoder trained: `model`, or the default for `init`."""
        return self.model or DEFAULT_MODEL.get(self.init, "")

    @property
    def arch(self) -> str:
        """The architecture name written into the model file (and model_id)."""
        return FILE_ARCH.get(self.model_name, self.model_name)

    def model_config(self) -> dict:
        if self.model_name != CONFIGURABLE:
            return {}
        return {
            "embedding_dim": self.embedding_dim,
            "input_size": self.small_input,
            "width": self.small_width,
        }

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        base = 1e-3 if self.init == "scratch" else 1e-5
        return base * (10.0 if self.optimizer == "sgd" else 1.0)

    def settings(self) -> dict:
        """The fields as a dict, with the model resolved (what a checkpoint records)."""
        return {**asdict(self), "model": self.model_name}

    def check(self) -> None:
        """Raise ConvlensError naming the first bad setting and its value."""
        self._check_choices()
        self._check_model()
        self._check_numbers()

    def _check_choices(self) -> None:
        from convlens.train.losses import HEADS, MININGS  # torch: only when checking

        choices = {
            "loss": ("triplet", "siamese"),
            "mining": MININGS,
            "head": HEADS,
            "init": ("pretrained", "scratch"),
            "optimizer": ("adamw", "sgd"),
            "schedule": ("cosine", "constant"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConvlensError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")

    def _check_model(self) -> None:
        from convlens.models import registry

        name = self.model_name
        entry = registry.get_encoder(name)  # unknown: error listing the names
        if self.init == "pretrained" and entry.weights.package is None:
            raise ConvlensError(f"model {name!r} has no pretrained weights; train it from scratch")
        if self.init == "scratch" and entry.build is None:
            raise ConvlensError(f"model {name!r} cannot be built untrained")
        if name != CONFIGURABLE and self.embedding_dim != FIXED_EMBEDDING_DIM:
            raise ConvlensError(
                f"embedding_dim {self.embedding_dim}: model {name!r} gives "
                f"{FIXED_EMBEDDING_DIM}-d embeddings; only {CONFIGURABLE} takes another size"
            )
        if self.small_input % 16 or not 16 <= self.small_input <= 1024:
            raise ConvlensError(f"small_input {self.small_input}: a multiple of 16 in 16..1024")

    def _check_numbers(self) -> None:
        for name, (lo, hi) in INT_LIMITS.items():
            value = getattr(self, name)
            if value is not None or name != "steps":  # steps None: one pass per epoch
                _whole(name, value, lo, hi)
        for name, (lo, hi, lo_open, hi_open) in FLOAT_LIMITS.items():
            value = getattr(self, name)
            if value is not None or name != "lr":  # lr None: the default for init/optimizer
                _number(name, value, lo, hi, lo_open=lo_open, hi_open=hi_open)


def _whole(name: str, value, lo: int, hi: int) -> None:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not lo <= value <= hi:
        raise ConvlensError(f"{name} {value!r}: must be a whole number in {lo}..{hi}")


def _number(name: str, value, lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        low, high = f"{'(' if lo_open else '['}{lo:g}", f"{hi:g}{')' if hi_open else ']'}"
        raise ConvlensError(f"{name} {value!r}: must be a finite number in {low}, {high}")
