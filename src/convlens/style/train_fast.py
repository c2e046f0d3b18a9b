"""Train one feed-forward network for one painting (Johnson, Alahi & Fei-Fei 2016).

    from convlens.style.train_fast import train_fast
    train_fast("starry_night.jpg", "photos/", "starry.pt", steps=400, crop=192)

The loss is the VGG19 (original Caffe weights) perceptual loss of `convlens.style`:

    J = content * Jc(relu2_2) / Jc0 + style * sum_l Js(relu{1..4}_1) / Js0 + tv * TV(output)

with Jc and Js the costs of `convlens.style.losses` (style: position-normalised Gram of each
output against the painting's, equal layer weights). Jc0 and Js0 are the values on the first
batch, so the weights mean "share of the starting cost" on any backbone scale. Random crops
(`crop` px, flipped) of the photos, Adam. A checkpoint (network, optimiser, step, loss
history) is written every `checkpoint_every` steps beside the output (`<out>.ckpt`); `resume`
continues from it. The loss curve is saved as `<out>.loss.png`.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from convlens.errors import ConvlensError
from convlens.models.transformer_net import TransformerNet, save_transformer_net
from convlens.style import imaging
from convlens.style.losses import (
    content_cost,
    normalized_gram,
    style_cost_from_grams,
    total_variation,
)
from convlens.style.options import IMAGE_SUFFIXES

CONTENT = ["features.relu2_2"]
STYLE = [f"features.relu{i}_1" for i in range(1, 5)]


@dataclass
class TrainFastConfig:
    steps: int = 400
    batch: int = 4
    crop: int = 192
    lr: float = 1e-3
    width: int = 16
    content_weight: float = 1.0
    style_weight: float = 4.0
    tv_weight: float = 10.0
    style_size: int = 384  # the painting's long side for its Gram targets
    checkpoint_every: int = 50
    seed: int = 0
    threads: int | None = None


@dataclass
class TrainFastResult:
    path: Path
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)  # per step: step, total, content, style, tv


Callback = Callable[[int, int, dict], None]


def photo_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder` (recursively); ConvlensError when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise ConvlensError(f"{root}: not a folder of photos")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConvlensError(f"{root}: no photos ({', '.join(IMAGE_SUFFIXES)}) in it")
    return files


class Crops:
    """Random crops (side `crop`, flipped at random) of photos scaled so that their short
    side is between crop and 1.5 crop; unreadable or tiny photos are skipped once, named."""

    def __init__(self, files: list[Path], crop: int, rng: random.Random):
        self.crop, self.rng = crop, rng
        self.images = []
        for f in files:
            try:
                img = imaging.load_checked(f, str(f))
            except ConvlensError:
                continue
            self.images.append(imaging.to_tensor(img, "cpu"))
        if not self.images:
            raise ConvlensError("none of the photos could be read")

    def batch(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            x = self.rng.choice(self.images)
            scale = self.crop * self.rng.uniform(1.0, 1.5) / min(x.shape[-2:])
            h, w = (max(self.crop, round(s * scale)) for s in x.shape[-2:])
            x = imaging.resize(x, (h, w))
            top, left = self.rng.randint(0, h - self.crop), self.rng.randint(0, w - self.crop)
            x = x[..., top : top + self.crop, left : left + self.crop]
            out.append(x.flip(-1) if self.rng.random() < 0.5 else x)
        return torch.cat(out)


class PerceptualLoss(torch.nn.Module):
    """Content, style and TV costs of a batch of outputs against their inputs and a painting."""

    def __init__(self, style_img: torch.Tensor):
        super().__init__()
        from convlens.models.vgg import load_vgg19
        from convlens.style.features import FeatureExtractor

        self.features = FeatureExtractor(load_vgg19(), CONTENT + STYLE)
        with torch.no_grad():
            feats = self.features(style_img)[len(CONTENT) :]
        self.grams = [normalized_gram(f) for f in feats]
        self.scale = None  # Jc0, Js0

    def forward(self, out: torch.Tensor, photos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            target = self.features(photos)[: len(CONTENT)]
        feats = self.features(out)
        jc = sum(content_cost(t, f) / t.numel() for t, f in zip(target, feats, strict=False))
        js = sum(
            style_cost_from_grams(g, normalized_gram(f)) / (len(STYLE) * out.shape[0])
            for g, f in zip(self.grams, feats[len(CONTENT) :], strict=True)
        )
        return jc, js, total_variation(out)


def _check(cfg: TrainFastConfig) -> None:
    limits = {"steps": (1, 10**6), "batch": (1, 256), "crop": (32, 2048), "width": (4, 128),
              "checkpoint_every": (1, 10**6), "style_size": (32, 4096)}  # fmt: skip
    for name, (lo, hi) in limits.items():
        v = getattr(cfg, name)
        if not isinstance(v, int) or not lo <= v <= hi:
            raise ConvlensError(f"{name} {v!r} is out of range [{lo}, {hi}]")
    if cfg.crop % 4:
        raise ConvlensError(f"crop {cfg.crop} must be a multiple of 4")
    for name in ("lr", "content_weight", "style_weight", "tv_weight"):
        v = getattr(cfg, name)
        if not isinstance(v, int | float) or not 0 <= v <= 1e9 or (name == "lr" and v <= 0):
            raise ConvlensError(f"{name} {v!r} is out of range")


def train_fast(
    style: str | os.PathLike,
    photos: str | os.PathLike,
    output: str | os.PathLike,
    *,
    resume: bool = False,
    callback: Callback | None = None,
    **options,
) -> TrainFastResult:
    """Train a network for `style` on crops of the photos under `photos`; save it to `output`."""
    cfg = TrainFastConfig(**options)
    _check(cfg)
    output = Path(output)
    ckpt_path = output.with_name(output.name + ".ckpt")
    style_np = imaging.load_checked(style, "style image")
    files = photo_files(photos)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    crops = Crops(files, cfg.crop, rng)
    from convlens.style.plan import fit

    style_t = imaging.resize(
        imaging.to_tensor(style_np, "cpu"), fit(*style_np.shape[:2], cfg.style_size)
    )
    loss_fn = PerceptualLoss(style_t)
    model = TransformerNet(cfg.width)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict] = []
    start = 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history, loss_fn.scale = state["step"], state["history"], state["scale"]
        rng.setstate(state["rng"])
    t0 = time.perf_counter()
    model.train()
    for step in range(start, cfg.steps):
        x = crops.batch(cfg.batch)
        out = model(x)
        jc, js, tv = loss_fn(out, x)
        if loss_fn.scale is None:
            loss_fn.scale = (float(jc.detach()) or 1.0, float(js.detach()) or 1.0)
        jc, js = jc / loss_fn.scale[0], js / loss_fn.scale[1]
        total = cfg.content_weight * jc + cfg.style_weight * js + cfg.tv_weight * tv
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        row = {"step": step + 1, "total": float(total.detach()), "content": float(jc.detach()),
               "style": float(js.detach()), "tv": float(tv.detach())}  # fmt: skip
        history.append(row)
        if callback is not None:
            callback(step + 1, cfg.steps, row)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _checkpoint(ckpt_path, model, opt, step + 1, history, loss_fn.scale, rng)
    model.eval()
    save_transformer_net(model, output, style=Path(str(style)).name, steps=cfg.steps,
                         config_used=asdict(cfg))  # fmt: skip
    plot_loss(history, output.with_name(output.name + ".loss.png"))
    return TrainFastResult(output, cfg.steps, time.perf_counter() - t0, history)


def _checkpoint(path: Path, model, opt, step: int, history, scale, rng) -> None:
    tmp = path.with_name(path.name + ".part")
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
             "history": history, "scale": scale, "rng": rng.getstate()}  # fmt: skip
    torch.save(state, tmp)
    os.replace(tmp, path)


def plot_loss(history: list[dict], path: Path) -> None:
    """The loss terms per step (each term: its share of its first-batch value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [r["step"] for r in history]
    for key in ("total", "content", "style"):
        ax.plot(steps, [r[key] for r in history], label=key)
    ax.set(xlabel="step", ylabel="loss (content, style: / first batch)", yscale="log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
