"""3-D volumes: reading (NumPy, NIfTI, DICOM), slice pictures, solid textures."""

from convlens.volumes.io import Volume, read_volume

__all__ = ["Volume", "read_volume"]
