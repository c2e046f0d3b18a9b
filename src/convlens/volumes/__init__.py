"""3-D volumes: reading (NumPy, NIfTI, DICOM), slice pictures, solid textures."""

from convlens.volumes.io import Volume, prepare_volume, read_volume

__all__ = ["Volume", "prepare_volume", "read_volume"]
