"""What is trained: the encoder (from the registry), frozen layers, and encoder plus loss."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convlens.errors import ConvlensError
from convlens.train.config import TrainConfig
from convlens.train.losses import siamese_head, siamese_loss, triplet_loss


def build_encoder(cfg: TrainConfig) -> nn.Module:
    """The model's pretrained weights, or a fresh (seeded) one from scratch."""
    from convlens.models import registry
    from convlens.models.face_models import build_architecture

    if cfg.init == "pretrained":
        return registry.get_encoder(cfg.model_name).load()
    return build_architecture(cfg.arch, cfg.model_config())


def freeze_before(model: nn.Module, name: str | None) -> list[str]:
    """Freeze every top-level submodule registered before `name`; returns the frozen names."""
    if not name:
        return []
    names = [n for n, _ in model.named_children()]
    if name not in names:
        raise ConvlensError(f"{name!r}: no such layer; layers: {', '.join(names)}")
    frozen = names[: names.index(name)]
    for n in frozen:
        for p in getattr(model, n).parameters():
            p.requires_grad_(False)
    return frozen


def weights_id(model: nn.Module, arch: str) -> str:
    """A model_id naming these exact weights: arch plus a short hash of the state dict."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return f"{arch}-{h.hexdigest()[:12]}"


class Objective(nn.Module):
    """Encoder plus loss in one forward, so DistributedDataParallel sees every parameter."""

    def __init__(self, encoder: nn.Module, cfg: TrainConfig, dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        self.head = siamese_head(dim, cfg.head) if cfg.loss == "siamese" else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        emb = self.encoder(x).float()
        if self.head is not None:
            r = siamese_loss(emb, labels, self.head, generator)
        else:
            r = triplet_loss(emb, labels, self.cfg.margin, self.cfg.mining, generator)
        return r.loss, torch.tensor(r.active_fraction, device=emb.device)


def augment_batch(x: torch.Tensor, rng: np.random.Generator, jitter: int) -> torch.Tensor:
    """Random horizontal flip and shift by up to `jitter` pixels (edge-replicated), per chip."""
    n, _, h, w = x.shape
    flip = rng.random(n) < 0.5
    shifts = rng.integers(-jitter, jitter + 1, size=(n, 2)) if jitter else np.zeros((n, 2), int)
    out = torch.empty_like(x)
    padded = F.pad(x.float(), (jitter,) * 4, mode="replicate") if jitter else x.float()
    for i in range(n):
        dy, dx = int(shifts[i, 0]) + jitter, int(shifts[i, 1]) + jitter
        chip = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = chip.flip(-1) if flip[i] else chip
    return out


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    lr = cfg.learning_rate()
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )


def lr_factor(step: int, total_steps: int, warmup: float, schedule: str) -> float:
    """Linear warm-up over `warmup` of the steps, then constant or cosine decay to 1%."""
    warm = max(1, int(warmup * total_steps))
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    t = (step - warm) / max(1, total_steps - warm)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
