"""The style-transfer objective as a module over the generated image G:

    J(G) = alpha * J_content(C, G) / n_content + beta * J_style(S, G) + tv * J_tv(G)

composed from `convlens.style.losses`' modules: one ContentLoss per content layer, one
StyleLoss per style layer (blended style Grams as targets, weighted by lambda_l), TVLoss.
Targets (content features, style Grams) are computed once per scale without autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from convlens.style.features import FeatureExtractor
from convlens.style.imaging import reflect_pad
from convlens.style.losses import ContentLoss, StyleLoss, TVLoss, WeightedSum


def autocast(amp: bool, device: torch.device):
    """bfloat16 autocast for the backbone when asked, a no-op context otherwise."""
    if amp:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


class FeatureInput(nn.Module):
    """Image -> the extractor's tapped feature maps: reflect padding, memory format, autocast.
    A one-channel (luminance) image is repeated to RGB for the network."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        pad: int,
        channels_last: bool,
        amp: bool,
        device: torch.device,
    ):
        super().__init__()
        self.extractor = extractor
        self.pad = pad
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.amp = amp
        self.device = device

    def forward(self, x: torch.Tensor, pad: bool = True) -> list[torch.Tensor]:
        x = x.expand(-1, 3, -1, -1)
        if pad:
            x = reflect_pad(x, self.pad)
        with autocast(self.amp, self.device):
            return self.extractor(x.contiguous(memory_format=self.memory_format))


@torch.no_grad()
def targets(
    features: FeatureInput,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    blend: list[float],
    n_content: int,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Content feature maps and blended, position-normalised style Grams (computed once).
    Style images are not padded: their statistics, not their positions, matter."""
    content_t = [f.float() for f in features(content)[:n_content]]
    grams = None
    for s, w in zip(styles, blend, strict=True):
        g = [w * StyleLoss.get_target(f) for f in features(s, pad=False)[n_content:]]
        grams = g if grams is None else [a + b for a, b in zip(grams, g, strict=True)]
    return content_t, grams


class StyleObjective(nn.Module):
    """x -> (J, terms) with terms = stack(content, style, tv), unweighted (for reporting)."""

    def __init__(
        self,
        features: FeatureInput,
        content_targets: list[torch.Tensor],
        style_grams: list[torch.Tensor],
        layer_weights: list[float],
        weights: tuple[float, float, float],  # alpha, beta, tv
    ):
        super().__init__()
        self.features = features
        self.n_content = len(content_targets)
        content = WeightedSum([ContentLoss(t) for t in content_targets], [1.0] * self.n_content)
        style = WeightedSum([StyleLoss(g) for g in style_grams], layer_weights)
        self.loss = WeightedSum([content, style, TVLoss()], weights)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        content, style, tv = self.loss.terms
        jc = content(feats[: self.n_content])
        js = style(feats[self.n_content :])
        # no TV graph at all when its weight is 0 (the reported term is then 0 too)
        jtv = tv(x) if self.loss.weights[2] > 0 else x.new_zeros(())
        total = self.loss.combine([jc, js, jtv])
        return total, torch.stack([jc.detach(), js.detach(), jtv.detach()])
