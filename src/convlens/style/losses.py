"""Gatys et al. style-transfer costs on feature maps of any number of spatial dimensions.

A feature map ``a`` has shape (B, C, *spatial): (B, C, L), (B, C, H, W), (B, C, D, H, W), ...
"Positions" means the product of the spatial sizes (n_H * n_W for images).

    J_content = 1/2 * sum (a(C) - a(G))^2
    Gram      G_kk' = sum_positions a_k * a_k'
    J_style[l] = 1 / (2 * positions * n_C)^2 * sum_kk' (G(S) - G(G))^2
    J_style   = sum_l lambda_l * J_style[l]

`normalized_gram` (G / positions) lets the style image and the generated image differ in size:
``style_cost_from_grams(G(S)/P_S, G(G)/P_G, C)`` equals ``style_layer_cost`` when P_S == P_G.
"""

from __future__ import annotations

import torch


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
