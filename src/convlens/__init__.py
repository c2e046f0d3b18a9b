"""convlens: face matching, neural style transfer and ConvNet inspection on PyTorch."""

from convlens.errors import ConvlensError

__all__ = ["ConvlensError"]
__version__ = "0.1.0"
