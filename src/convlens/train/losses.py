"""Losses for training face encoders: triplet loss with in-batch mining, and a Siamese head.

Triplet mining on a batch of embeddings with identity labels (distances are Euclidean):
- "all" (batch-all): every valid triplet (a, p, n); the loss is the mean over the triplets whose
  loss is positive, so easy triplets do not dilute it as the net improves.
- "hard" (batch-hard): per anchor, its farthest positive and its closest negative.
- "semi-hard" (FaceNet): per anchor-positive pair, the closest negative that is still farther
  than the positive, d(a,p) < d(a,n); it has positive loss iff d(a,n) < d(a,p) + margin.
  Where no negative is farther than the positive, the farthest negative is used (as in
  TensorFlow-Addons' triplet_semihard_loss), so the pair still pulls the classes apart.
- "random": per anchor-positive pair, a uniformly random negative.
For hard, semi-hard and random the loss is the mean over all the selected triplets.

Every mining returns the fraction of "active" triplets: those with a positive loss among the
triplets it considered (all valid ones for batch-all, the selected ones otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convlens.faces.verifier import KINDS, PairVerifier

MININGS = ("semi-hard", "hard", "all", "random")


@dataclass
class TripletResult:
    loss: torch.Tensor  # scalar, differentiable
    active_fraction: float  # triplets with positive loss / triplets considered
    triplets: int  # triplets considered


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix, with a gradient that stays finite at zero distance."""
    x = emb.float()
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    zero = d2 <= 1e-16
    # sqrt has an infinite derivative at 0: take it on a safe value, then zero those entries.
    d = torch.sqrt(torch.where(zero, torch.ones_like(d2), d2))
    return torch.where(zero, torch.zeros_like(d), d)


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same  # positive (a != p), negative


def batch_all(dist: torch.Tensor, labels: torch.Tensor, margin: float) -> TripletResult:
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]  # [a, p, n]
    losses = F.relu(dist[:, :, None] - dist[:, None, :] + margin)[valid]
    active = losses > 1e-16
    n_active = int(active.sum())
    loss = losses[active].sum() / max(n_active, 1)  # 0 with a graph when none is active
    return TripletResult(loss, n_active / max(losses.numel(), 1), int(losses.numel()))


def hard_selection(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per anchor with a positive and a negative: (anchors, farthest positive, closest negative)."""
    pos, neg = _masks(labels)
    anchors = torch.nonzero(pos.any(1) & neg.any(1)).flatten()
    far_pos = torch.where(pos, dist, torch.full_like(dist, -1.0)).argmax(1)
    near_neg = torch.where(neg, dist, torch.full_like(dist, float("inf"))).argmin(1)
    return anchors, far_pos[anchors], near_neg[anchors]


def semi_hard_selection(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per anchor-positive pair: (anchors, positives, chosen negatives).

    The chosen negative is the closest one farther than the positive; if none is farther,
    the farthest negative.
    """
    pos, neg = _masks(labels)
    a, p = torch.nonzero(pos & neg.any(1, keepdim=True), as_tuple=True)
    d_ap = dist[a, p][:, None]
    d_an = dist[a]  # (pairs, N)
    negs = neg[a]
    outside = negs & (d_an > d_ap)
    inf = torch.full_like(d_an, float("inf"))
    closest_outside = torch.where(outside, d_an, inf).argmin(1)
    farthest = torch.where(negs, d_an, -inf).argmax(1)
    n = torch.where(outside.any(1), closest_outside, farthest)
    return a, p, n


def random_selection(
    labels: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, ...]:
    """Per anchor-positive pair: (anchors, positives, a uniformly random negative)."""
    pos, neg = _masks(labels)
    a, p = torch.nonzero(pos & neg.any(1, keepdim=True), as_tuple=True)
    weights = neg[a].float().cpu()
    n = torch.multinomial(weights, 1, generator=generator).flatten().to(labels.device)
    return a, p, n


def _selected(dist, a, p, n, margin) -> TripletResult:
    losses = F.relu(dist[a, p] - dist[a, n] + margin)
    if losses.numel() == 0:
        return TripletResult(dist.sum() * 0.0, 0.0, 0)
    active = float((losses > 1e-16).float().mean())
    return TripletResult(losses.mean(), active, int(losses.numel()))


def triplet_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    mining: str = "semi-hard",
    generator: torch.Generator | None = None,
) -> TripletResult:
    """Triplet loss max(d(a,p) - d(a,n) + margin, 0) with the named in-batch mining."""
    dist = pairwise_distances(emb)
    if mining == "all":
        return batch_all(dist, labels, margin)
    if mining == "hard":
        a, p, n = hard_selection(dist, labels)
    elif mining == "semi-hard":
        a, p, n = semi_hard_selection(dist, labels)
    elif mining == "random":
        a, p, n = random_selection(labels, generator)
    else:
        raise ValueError(f"unknown mining {mining!r}; choose from {MININGS}")
    return _selected(dist, a, p, n, margin)


# --- Siamese binary classification ------------------------------------------------------

HEADS = KINDS  # "abs": |f(a) - f(b)|, "chi2": (f(a) - f(b))^2 / (|f(a)| + |f(b)|)


def siamese_head(dim: int, kind: str = "abs") -> PairVerifier:
    """The logistic pair classifier of convlens.faces.verifier, trained end to end with the
    encoder; a positive logit means "same person".

    It starts as "larger difference = less alike", scaled for unit-length embeddings (the sum
    of |a_i - b_i| is about 1.1 sqrt(dim) for unrelated ones), so the first steps make sense.
    """
    head = PairVerifier(dim, kind)
    nn.init.constant_(head.linear.weight, -4.0 / dim**0.5)
    nn.init.constant_(head.linear.bias, 2.0)
    return head


def balanced_pairs(
    labels: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All same-person pairs i < j in the batch and as many random different-person pairs.

    Returns (i, j, same) with same as float 0/1 targets.
    """
    pos, neg = _masks(labels)
    upper = torch.ones_like(pos).triu(1)
    pi, pj = torch.nonzero(pos & upper, as_tuple=True)
    ni, nj = torch.nonzero(neg & upper, as_tuple=True)
    k = min(len(pi), len(ni)) if len(pi) else min(len(ni), len(labels))
    pick = torch.randperm(len(ni), generator=generator)[:k].to(labels.device)
    i = torch.cat([pi, ni[pick]])
    j = torch.cat([pj, nj[pick]])
    same = torch.cat([torch.ones(len(pi)), torch.zeros(k)]).to(labels.device)
    return i, j, same


def siamese_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    head: PairVerifier,
    generator: torch.Generator | None = None,
) -> TripletResult:
    """Binary cross-entropy of the head on balanced pairs from the batch.

    active_fraction here is the fraction of pairs the head gets wrong (logit on the wrong side).
    """
    i, j, same = balanced_pairs(labels, generator)
    logits = head(emb[i], emb[j])
    loss = F.binary_cross_entropy_with_logits(logits, same)
    wrong = float(((logits > 0).float() != same).float().mean()) if len(same) else 0.0
    return TripletResult(loss, wrong, int(len(same)))
