"""Triplet mining and Siamese loss on hand-built embeddings with known distances."""

from __future__ import annotations

import itertools

import pytest
import torch

from convlens.errors import ConvlensError
from convlens.train.losses import (
    balanced_pairs,
    hard_selection,
    pairwise_distances,
    semi_hard_selection,
    siamese_head,
    siamese_loss,
    triplet_loss,
)

# 2 people x 2 embeddings on a line: A = {0, 1}, B = {1.5, 4}.
#   d(0,1)=1  d(0,2)=1.5  d(0,3)=4  d(1,2)=0.5  d(1,3)=3  d(2,3)=2.5     (all exact in float)
X = torch.tensor([[0.0], [1.0], [1.5], [4.0]])
Y = torch.tensor([0, 0, 1, 1])
MARGIN = 1.0


def test_distances_exact_and_finite_gradient_at_zero():
    d = pairwise_distances(X)
    assert d[0, 2] == 1.5 and d[1, 3] == 3.0 and d[2, 3] == 2.5
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0]], requires_grad=True)
    pairwise_distances(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_batch_all_averages_over_positive_loss_triplets_only():
    # The 8 valid triplets' losses max(d(a,p) - d(a,n) + 1, 0):
    #   a0 p1: n2 0.5, n3 0 | a1 p0: n2 1.5, n3 0 | a2 p3: n0 2, n1 3 | a3 p2: n0 0, n1 0.5
    r = triplet_loss(X, Y, MARGIN, "all")
    assert r.triplets == 8
    assert r.active_fraction == pytest.approx(5 / 8)
    assert float(r.loss) == pytest.approx((0.5 + 1.5 + 2 + 3 + 0.5) / 5)


def test_batch_hard_picks_farthest_positive_and_closest_negative():
    anchors, pos, neg = hard_selection(pairwise_distances(X), Y)
    assert anchors.tolist() == [0, 1, 2, 3]
    assert pos.tolist() == [1, 0, 3, 2]
    # closest negatives: to 0 -> 1.5 (index 2); to 1 -> 1.5 (2); to 1.5 -> 1 (1); to 4 -> 1 (1)
    assert neg.tolist() == [2, 2, 1, 1]
    r = triplet_loss(X, Y, MARGIN, "hard")
    assert float(r.loss) == pytest.approx((0.5 + 1.5 + 3 + 0.5) / 4)
    assert r.active_fraction == 1.0


def test_batch_hard_farthest_positive_among_several():
    x = torch.tensor([[0.0], [0.3], [1.0], [1.2], [1.5], [3.1]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    _, pos, neg = hard_selection(pairwise_distances(x), y)
    assert pos.tolist() == [2, 2, 0, 5, 5, 3]
    assert neg.tolist() == [3, 3, 3, 2, 2, 2]


def test_semi_hard_picks_negative_between_positive_and_positive_plus_margin():
    d = pairwise_distances(X)
    a, p, n = semi_hard_selection(d, Y)
    chosen = {(int(i), int(j)): int(k) for i, j, k in zip(a, p, n, strict=True)}
    # (0,1): d_ap=1; negatives farther than 1: 1.5 (idx 2), 4 (idx 3) -> closest is 2;
    #        1 < 1.5 < 1 + margin: a semi-hard negative.
    assert chosen[(0, 1)] == 2
    # (1,0): d_ap=1; negatives of 1 at 0.5 (hard, skipped) and 3 -> picks 3, which is easy
    #        (3 >= 1 + margin), never the hard one.
    assert chosen[(1, 0)] == 3
    # (3,2): d_ap=2.5; negatives of 4 at 4 and 3 -> closest farther than 2.5 is 3 (idx 1).
    assert chosen[(3, 2)] == 1
    # (2,3): d_ap=2.5; every negative of 1.5 is closer (1.5, 0.5): falls back to the farthest.
    assert chosen[(2, 3)] == 0
    for (i, j), k in chosen.items():
        if (i, j) != (2, 3):
            assert d[i, j] < d[i, k]
    r = triplet_loss(X, Y, MARGIN, "semi-hard")
    assert r.triplets == 4
    assert r.active_fraction == pytest.approx(3 / 4)
    assert float(r.loss) == pytest.approx((0.5 + 0 + 2 + 0.5) / 4)


def test_semi_hard_matches_brute_force_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    d = pairwise_distances(x)
    a, p, n = semi_hard_selection(d, y)
    got = {(int(i), int(j)): int(k) for i, j, k in zip(a, p, n, strict=True)}
    for i, j in itertools.permutations(range(12), 2):
        if y[i] != y[j]:
            continue
        negs = [k for k in range(12) if y[k] != y[i]]
        farther = [k for k in negs if d[i, k] > d[i, j]]
        want = min(farther, key=lambda k: d[i, k]) if farther else max(negs, key=lambda k: d[i, k])
        assert got[(i, j)] == want


def test_random_mining_draws_only_negatives_and_is_seeded():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    x = torch.randn(6, 4)
    r1 = triplet_loss(x, y, 0.2, "random", torch.Generator().manual_seed(3))
    r2 = triplet_loss(x, y, 0.2, "random", torch.Generator().manual_seed(3))
    assert float(r1.loss) == float(r2.loss) and r1.triplets == 6
    from convlens.train.losses import random_selection

    a, _, n = random_selection(y, torch.Generator().manual_seed(1))
    assert (y[a] != y[n]).all()


def test_loss_keeps_graph_when_nothing_is_active():
    x = torch.tensor([[0.0], [0.0], [10.0], [10.0]], requires_grad=True)
    for mining in ("all", "hard", "semi-hard"):
        r = triplet_loss(x, Y, 0.2, mining)
        assert float(r.loss.detach()) == 0.0 and r.active_fraction == 0.0
        r.loss.backward()


def test_siamese_heads_and_balanced_pairs():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    i, j, same = balanced_pairs(y, torch.Generator().manual_seed(0))
    assert int(same.sum()) == 4  # (0,1) (0,2) (1,2) (3,4)
    assert len(same) == 8
    assert ((y[i] == y[j]).float() == same).all()
    emb = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    for kind in ("abs", "chi2"):
        head = siamese_head(8, kind)
        assert head(emb[:3], emb[3:]).shape == (3,)
        # Identical embeddings look more alike than different ones from the start.
        assert head(emb[:1], emb[:1]) > head(emb[:1], -emb[:1])
        r = siamese_loss(emb, y, head, torch.Generator().manual_seed(0))
        assert r.loss.ndim == 0 and r.triplets == 8
    with pytest.raises(ConvlensError):
        siamese_head(8, "cosine")
