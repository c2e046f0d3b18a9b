"""Receptive fields from the layer stack: which input box each unit of each layer sees.

Every named module's output gets a `ReceptiveField`: per spatial axis the nominal
(jump, start, size) triple -- unit i covers input pixels [start + i*jump, ... + size), padding
included -- and the exact span of input pixels each position depends on (propagated position
by position, so a unit next to a border whose field reaches into padding, or into pixels an
unpadded strided layer dropped, gets exactly the pixels it can see). The arithmetic is per
axis (axis.py), so 1-d, 2-d and 3-d networks share it; the input's shape says how many
spatial axes there are.

Fields are propagated with torch.fx, one module level at a time, while the network runs on an
example input (the real tensors give every node's shape; propagate.py), by rules per layer
type (rules.py):

- convolutions and pooling (module or functional): kernel, stride, padding, dilation;
- explicit padding (nn.ZeroPad2d & co., F.pad) and spatial slicing `x[..., a:b, c:d]`;
- ops with several spatial inputs (residual adds, concatenation along channels): the union of
  the inputs' fields, so a residual block's output sees what either branch sees;
- element-wise ops (activations, batch norm, dropout): the field passes through;
- adaptive pooling: its bins; anything that removes the spatial axes (flatten, linear, global
  pooling): the whole input.

A module symbolic tracing cannot handle (Python control flow on shapes) is traced at the ATen
level by make_fx on the real input instead, with every submodule's output marked in the graph
(aten.py). An op no rule covers that resamples its one spatial input (interpolation,
transposed convolution, pixel shuffle) is measured: gradients of each output slice along each
axis on a random input say which input positions it reads.

Notes: (1) An input broadcast from 1x1 to a larger map (the gate of a squeeze-and-excitation
block, a per-channel scale) is not treated as spatial: strictly such a gate makes every unit
depend on the whole image, but the unit's spatial pattern still comes from its local field,
which is what a patch should show. (2) Other size-changing ops with several spatial inputs make
the field unknown from there on. (3) Reflection and replication padding are treated like zero
padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convlens.inspection.receptive.axis import Axis
from convlens.inspection.receptive.field import ReceptiveField
from convlens.inspection.receptive.propagate import LayerInfo, Propagator
from convlens.inspection.receptive.values import V

__all__ = ["Axis", "LayerInfo", "ReceptiveField", "analyze"]


def analyze(model: nn.Module, input_size: Sequence[int], channels: int = 3) -> dict[str, LayerInfo]:
    """Output shape and receptive field of every named module, for one input size: (H, W)
    for an image network, (L,) or (D, H, W) for 1-d or 3-d ones.

    Runs the model once on a zero batch of one input (on the model's device, no gradients).
    The returned dict is in execution order.
    """
    size = tuple(int(n) for n in input_size)
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = torch.zeros(1, channels, *size, device=device, dtype=dtype)
    prop = Propagator(len(size))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prop.run_module(model, "", (V(x, ReceptiveField.identity(size)),), {})
    finally:
        model.train(was_training)
    return prop.layers
