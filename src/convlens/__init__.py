"""convlens: face matching, neural style transfer and ConvNet inspection on PyTorch."""

import os
import sys

if "torch" not in sys.modules:
    # torch's OpenMP threads spin while they wait; when the CPU is shared (dlib detecting in
    # our own threads, or other processes) a 2-thread forward pass measured 30-70x slower
    # than with passive waiting. Must be set before torch loads; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from convlens.errors import ConvlensError  # noqa: E402

__all__ = ["ConvlensError"]
__version__ = "0.1.0"
