"""A learned pair verifier on top of face embeddings (DeepFace-style binary classifier).

    ŷ = σ(Σ_k w_k · φ(a, b)_k + b)

with φ one of
  "abs":  |a_k − b_k|                              (DeepFace's weighted L1)
  "chi2": (a_k − b_k)² / (|a_k| + |b_k| + ε)       (DeepFace's weighted χ²)

χ² on signed vectors. DeepFace's χ² is (a−b)²/(a+b), meant for non-negative (post-ReLU)
features. dlib's embeddings have negative components, so a + b can be 0 or negative and the
plain formula divides by zero or flips sign. We divide by |a_k| + |b_k| instead: equal to
a_k + b_k when both are non-negative (the original χ²), always ≥ |a_k + b_k| ≥ 0, zero only
when both are zero (then the numerator is zero too; ε = 1e-6 keeps 0/0 at 0), and bounded:
φ_k ≤ |a_k| + |b_k|. So it stays a "relative squared difference" per component.

Scores: `probability(a, b)` is p(same person). Where a distance is expected (metrics, the
gallery's τ), 1 − p is used, so "lower means more alike" holds everywhere.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.models.files import load_torch_file, save_torch_file

FORMAT = "convlens-verifier"
KINDS = ("abs", "chi2")
EPS = 1e-6


def pair_features(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "abs":
        return (a - b).abs()
    if kind == "chi2":
        return (a - b).pow(2) / (a.abs() + b.abs() + EPS)
    raise ConvlensError(f"unknown verifier kind {kind!r}; choose from {KINDS}")


class PairVerifier(nn.Module):
    """Logistic regression on per-component pair features; knows its encoder's model_id."""

    def __init__(self, dim: int = 128, kind: str = "abs", model_id: str = "", threshold=0.5):
        super().__init__()
        if kind not in KINDS:
            raise ConvlensError(f"unknown verifier kind {kind!r}; choose from {KINDS}")
        self.kind = kind
        self.dim = dim
        self.model_id = model_id
        self.threshold = float(threshold)  # accept when p(same) >= threshold
        self.linear = nn.Linear(dim, 1)
        # Standardisation of features, fitted on the training pairs.
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits of p(same), shape (n,)."""
        x = (pair_features(a, b, self.kind) - self.mean) / self.scale
        return self.linear(x).squeeze(-1)

    def probability(self, a, b) -> np.ndarray:
        a = torch.tensor(np.asarray(a, dtype=np.float32)).reshape(-1, self.dim)
        b = torch.tensor(np.asarray(b, dtype=np.float32)).reshape(-1, self.dim)
        with torch.no_grad():
            return torch.sigmoid(self(a, b)).numpy()

    def distance(self, a, b) -> np.ndarray:
        """1 − p(same): a dissimilarity for metrics and thresholds."""
        return 1.0 - self.probability(a, b)


def training_pairs(
    labels: np.ndarray, impostors_per_genuine: float = 10.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All genuine pairs and a random sample of impostor pairs: (i, j, same)."""
    labels = np.asarray(labels)
    n = len(labels)
    i, j = np.triu_indices(n, k=1)
    same = labels[i] == labels[j]
    gi, gj = i[same], j[same]
    imp = np.nonzero(~same)[0]
    if not len(gi) or not len(imp):
        raise ConvlensError("training a verifier needs several photos of several people")
    want = min(len(imp), int(impostors_per_genuine * len(gi)))
    pick = np.random.default_rng(seed).choice(imp, want, replace=False)
    ii = np.r_[gi, i[pick]]
    jj = np.r_[gj, j[pick]]
    return ii, jj, np.r_[np.ones(len(gi), bool), np.zeros(want, bool)]


def train_verifier(
    embeddings: np.ndarray,
    labels: np.ndarray,
    kind: str = "abs",
    model_id: str = "",
    epochs: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = False,
) -> PairVerifier:
    """Fit the verifier on pairs of `embeddings` (full batch Adam, classes balanced)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConvlensError(f"epochs must be a whole number ≥ 1, not {epochs!r}")
    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    ii, jj, same = training_pairs(labels, seed=seed)
    model = PairVerifier(x.shape[1], kind, model_id)
    feats = pair_features(x[ii], x[jj], kind)
    model.mean.copy_(feats.mean(0))
    model.scale.copy_(feats.std(0).clamp_min(1e-6))
    y = torch.as_tensor(same, dtype=torch.float32)
    pos_weight = torch.tensor((~same).sum() / max(same.sum(), 1), dtype=torch.float32)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.Adam(model.linear.parameters(), lr=lr, weight_decay=weight_decay)
    a, b = x[ii], x[jj]
    steps = range(epochs)
    if progress:
        from convlens.progress import track

        steps = track(steps, f"training {kind} verifier", unit="epoch")
    for _ in steps:
        opt.zero_grad()
        loss = loss_fn(model(a, b), y)
        loss.backward()
        opt.step()
    model.final_loss = float(loss.detach())
    return model.eval()


def save_verifier(model: PairVerifier, path: str | os.PathLike) -> None:
    payload = {
        "format": FORMAT,
        "version": 1,
        "kind": model.kind,
        "dim": model.dim,
        "model_id": model.model_id,
        "threshold": model.threshold,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    save_torch_file(payload, path)


def load_verifier(path: str | os.PathLike) -> PairVerifier:
    payload = load_torch_file(path, FORMAT, "verifier")
    model = PairVerifier(payload["dim"], payload["kind"], payload["model_id"], payload["threshold"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()
