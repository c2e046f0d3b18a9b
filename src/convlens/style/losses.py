"""Gatys et al. style-transfer costs on feature maps of any number of spatial dimensions.

A feature map ``a`` has shape (B, C, *spatial): (B, C, L), (B, C, H, W), (B, C, D, H, W), ...
"Positions" means the product of the spatial sizes (n_H * n_W for images).

    J_content = 1/2 * sum (a(C) - a(G))^2
    Gram      G_kk' = sum_positions a_k * a_k'
    J_style[l] = 1 / (2 * positions * n_C)^2 * sum_kk' (G(S) - G(G))^2
    J_style   = sum_l lambda_l * J_style[l]

`normalized_gram` (G / positions) lets the style image and the generated image differ in size:
``style_cost_from_grams(G(S)/P_S, G(G)/P_G, C)`` equals ``style_layer_cost`` when P_S == P_G.

The same costs as composable modules (after crowsonkb's style_transfer): `ContentLoss` and
`StyleLoss` hold their target and score one feature map, `TVLoss` scores the image, and
`WeightedSum` adds weighted terms, so that the objective of `convlens.style` reads as
``alpha * content + beta * style + tv * TV``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def positions(a: torch.Tensor) -> int:
    """Number of spatial positions of a (B, C, *spatial) feature map."""
    n = 1
    for s in a.shape[2:]:
        n *= s
    return n


def gram(a: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) -> (B, C, C): G_kk' = sum over positions of a_k * a_k'."""
    if a.dim() < 3:
        raise ValueError(f"feature map needs shape (B, C, *spatial), got {tuple(a.shape)}")
    if a.dim() > 3 and a.shape[1] > 1 and a.movedim(1, -1).is_contiguous():
        # channels-last: G = F^T F with F (B, positions, C), a view. Flattening to (B, C, P)
        # would hand autograd an NCHW gradient to add to the convolution's channels-last one,
        # a strided add + ReLU backward that cost VGG19 more than channels-last saved.
        f = a.movedim(1, -1).flatten(1, -2)
        return f.transpose(1, 2) @ f
    f = a.flatten(2)
    return f @ f.transpose(1, 2)


def normalized_gram(a: torch.Tensor) -> torch.Tensor:
    """Gram matrix divided by the number of positions (size-independent style statistics)."""
    return gram(a) / positions(a)


def content_cost(a_c: torch.Tensor, a_g: torch.Tensor) -> torch.Tensor:
    """J_content = 1/2 * ||a(C) - a(G)||^2, summed over everything (batch included)."""
    return 0.5 * (a_c - a_g).pow(2).sum()


def style_layer_cost(a_s: torch.Tensor, a_g: torch.Tensor) -> torch.Tensor:
    """J_style[l] = 1/(2 n_positions n_C)^2 * sum (G(S) - G(G))^2 for same-shaped feature maps.

    Summed over the batch.
    """
    if a_s.shape[1:] != a_g.shape[1:]:
        raise ValueError(f"shape mismatch {tuple(a_s.shape)} vs {tuple(a_g.shape)}")
    n_c, n_p = a_g.shape[1], positions(a_g)
    return (gram(a_s) - gram(a_g)).pow(2).sum() / (2.0 * n_p * n_c) ** 2


def style_cost_from_grams(g_s: torch.Tensor, g_g: torch.Tensor) -> torch.Tensor:
    """The layer cost on position-normalised Grams: sum (G_S - G_G)^2 / (2 n_C)^2."""
    n_c = g_g.shape[-1]
    return (g_s - g_g).pow(2).sum() / (2.0 * n_c) ** 2


def style_cost(
    style_maps: list[torch.Tensor], generated_maps: list[torch.Tensor], weights: list[float]
) -> torch.Tensor:
    """J_style = sum_l lambda_l * J_style[l]."""
    if not (len(style_maps) == len(generated_maps) == len(weights)):
        raise ValueError("style_cost needs one weight per layer")
    return sum(
        w * style_layer_cost(s, g)
        for s, g, w in zip(style_maps, generated_maps, weights, strict=True)
    )


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbours along every spatial axis of (B, C, *spatial),
    summed over axes (0 for a constant image)."""
    tv = x.new_zeros(())
    for dim in range(2, x.dim()):
        if x.shape[dim] > 1:
            tv = tv + torch.diff(x, dim=dim).pow(2).mean()
    return tv


# ---------------------------------------------------------------- the costs as modules


class ContentLoss(nn.Module):
    """J_content against a fixed target feature map, divided by its number of elements (one
    alpha/beta balance then works at every image size)."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return content_cost(features.float(), self.target) / self.target.numel()


class StyleLoss(nn.Module):
    """J_style[l] against a fixed position-normalised target Gram (see `get_target`), so that
    the style image and the generated image may differ in size."""

    def __init__(self, target_gram: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target_gram)

    @staticmethod
    def get_target(features: torch.Tensor) -> torch.Tensor:
        return normalized_gram(features.float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return style_cost_from_grams(self.target, normalized_gram(features.float()))


class TVLoss(nn.Module):
    """Total variation of the image itself (removes fine colour speckle)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return total_variation(image)


class WeightedSum(nn.Module):
    """sum_i w_i * term_i(inputs_i): terms[i] scores inputs[i]."""

    def __init__(self, terms: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        if len(terms) != len(weights):
            raise ValueError(f"{len(weights)} weights for {len(terms)} terms")
        self.terms = nn.ModuleList(terms)
        self.weights = [float(w) for w in weights]

    def combine(self, scores: Sequence[torch.Tensor]) -> torch.Tensor:
        """The weighted sum of already computed (unweighted) term values."""
        if not scores:
            return torch.zeros(())
        weighted = [w * v for w, v in zip(self.weights, scores, strict=True)]
        total = weighted[0]
        for value in weighted[1:]:
            total = total + value
        return total

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.combine([term(x) for term, x in zip(self.terms, inputs, strict=True)])
