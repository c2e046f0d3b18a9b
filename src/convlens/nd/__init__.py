"""Building blocks that take their number of spatial dimensions from the data: layers and a
network definition that run as 1-D (signals), 2-D (images) and 3-D (volumes), and the 2-D to
3-D weight inflation of Carreira & Zisserman (2017)."""

from convlens.nd.inflate import inflate
from convlens.nd.layers import NdConvNet, SequentialTaps, avg_pool, batch_norm, conv, max_pool

__all__ = ["NdConvNet", "SequentialTaps", "avg_pool", "batch_norm", "conv", "inflate", "max_pool"]
