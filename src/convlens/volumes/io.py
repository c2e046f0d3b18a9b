"""Robust volume reading: NumPy (.npy, .npz), NIfTI (.nii, .nii.gz) and DICOM (a file or a
folder of slices), as float32 (D, H, W) plus voxel spacing in mm along the same axes.

    from convlens.volumes import read_volume
    vol = read_volume("head_ct.npz")        # vol.data (108, 256, 256), vol.spacing

Axis order is (slice, row, column); NIfTI's (x, y, z) arrays are reversed to (z, y, x). The
shape is read from the header and checked (3-D, non-empty, at most MAX_VOXELS) before any
voxel is decoded; every failure is one ConvlensError line naming the file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.errors import ConvlensError

MAX_VOXELS = 512**3
NPZ_KEYS = ("volume", "data", "arr_0")
VOLUME_SUFFIXES = (".npy", ".npz", ".nii", ".nii.gz", ".dcm")  # or a folder of DICOM slices


@dataclass(frozen=True)
class Volume:
    data: np.ndarray  # float32 (D, H, W)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)


def _check_shape(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise ConvlensError(f"{path}: array of shape {tuple(shape)} is not a 3-D volume")
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        raise ConvlensError(f"{path}: empty volume {tuple(shape)}")
    if n > MAX_VOXELS:
        raise ConvlensError(
            f"{path}: volume {'x'.join(map(str, shape))} = {n / 1e6:.0f} M voxels, over the "
            f"{MAX_VOXELS / 1e6:.0f} M voxel limit"
        )


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return shape, dtype


def _read_numpy(path: Path) -> Volume:
    spacing = (1.0, 1.0, 1.0)
    if path.suffix.lower() == ".npy":
        with path.open("rb") as f:
            shape, dtype = _npy_header(f)
        _check_shape(path, shape)
        data = np.load(path, allow_pickle=False)
        return Volume(_as_float(path, data, dtype), spacing)
    with zipfile.ZipFile(path) as zf:
        names = [n.removesuffix(".npy") for n in zf.namelist()]
        key = next((k for k in NPZ_KEYS if k in names), names[0] if len(names) == 1 else None)
        if key is None:
            raise ConvlensError(f"{path}: no 'volume' array among {', '.join(names[:8])}")
        with zf.open(f"{key}.npy") as f:
            shape, dtype = _npy_header(f)
    _check_shape(path, shape)
    with np.load(path, allow_pickle=False) as z:
        data = z[key]
        if "spacing_mm" in z.files:
            spacing = tuple(float(s) for s in np.asarray(z["spacing_mm"]).ravel()[:3])
    return Volume(_as_float(path, data, dtype), spacing)


def _as_float(path: Path, data: np.ndarray, dtype) -> np.ndarray:
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ConvlensError(f"{path}: volume of {dtype} values is not numeric")
    out = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ConvlensError(f"{path}: volume holds NaN or infinite values")
    return out


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    img = nib.load(str(path))
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    _check_shape(path, shape)
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape).transpose(2, 1, 0)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Volume(_as_float(path, data, data.dtype), zooms[::-1])


def _read_dicom(path: Path) -> Volume:
    import pydicom

    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    heads = []
    for f in files:
        try:
            heads.append((f, pydicom.dcmread(str(f), stop_before_pixels=True)))
        except pydicom.errors.InvalidDicomError:
            continue  # other files in a DICOM folder (DICOMDIR, notes) are skipped
    if not heads:
        raise ConvlensError(f"{path}: no DICOM slices found")
    rows, cols = int(heads[0][1].Rows), int(heads[0][1].Columns)
    _check_shape(path, (len(heads), rows, cols) if len(heads) > 1 else (1, rows, cols))
    if len(heads) == 1 and int(getattr(heads[0][1], "NumberOfFrames", 1)) > 1:
        ds = pydicom.dcmread(str(heads[0][0]))
        data = ds.pixel_array.astype(np.float32) * _slope(ds)[0] + _slope(ds)[1]
        return Volume(_as_float(path, data, data.dtype), _dicom_spacing(ds, None))
    heads.sort(key=lambda h: _slice_position(h[1]))
    slices = []
    for f, _ in heads:
        ds = pydicom.dcmread(str(f))
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise ConvlensError(f"{f}: slice is {ds.Rows}x{ds.Columns}, not {rows}x{cols}")
        slope, intercept = _slope(ds)
        slices.append(ds.pixel_array.astype(np.float32) * slope + intercept)
    data = np.stack(slices)
    _check_shape(path, data.shape)
    gap = None
    if len(heads) > 1:
        gap = abs(_slice_position(heads[1][1]) - _slice_position(heads[0][1])) or None
    return Volume(_as_float(path, data, data.dtype), _dicom_spacing(heads[0][1], gap))


def _slope(ds) -> tuple[float, float]:
    return float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))


def _slice_position(ds) -> float:
    pos = getattr(ds, "ImagePositionPatient", None)
    return float(pos[2]) if pos is not None else float(getattr(ds, "InstanceNumber", 0))


def _dicom_spacing(ds, gap: float | None) -> tuple[float, float, float]:
    row, col = (float(v) for v in getattr(ds, "PixelSpacing", (1.0, 1.0)))
    depth = gap or float(getattr(ds, "SliceThickness", 1.0) or 1.0)
    return (depth, row, col)


def read_volume(path: str | os.PathLike) -> Volume:
    """A 3-D volume from .npy/.npz/.nii/.nii.gz/DICOM, as float32 (D, H, W) and spacing."""
    path = Path(path)
    if not path.exists():
        raise ConvlensError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise ConvlensError(f"{path}: empty file")
    name = path.name.lower()
    try:
        if path.is_dir() or name.endswith(".dcm"):
            return _read_dicom(path)
        if name.endswith((".npy", ".npz")):
            return _read_numpy(path)
        if name.endswith((".nii", ".nii.gz")):
            return _read_nifti(path)
    except ConvlensError:
        raise
    except MemoryError:
        raise ConvlensError(f"{path}: out of memory reading the volume") from None
    except Exception as e:  # noqa: BLE001 - every decoder's own failure becomes one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConvlensError(f"{path}: cannot read volume ({reason[:200]})") from None
    raise ConvlensError(f"{path}: not a volume file (.npy, .npz, .nii, .nii.gz, .dcm or a folder)")


def prepare_volume(
    path: str | os.PathLike,
    shape: Sequence[int] = (24, 48, 48),
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """A volume file windowed to 0..1 and resampled to `shape` (D, H, W). Default window:
    CT -1000..1500 HU when the volume holds negative values, else its 1st..99th percentile."""
    import torch

    from convlens.models.vgg19_3d import CT_WINDOW

    data = read_volume(path).data
    if window is None:
        window = CT_WINDOW if data.min() < 0 else tuple(np.percentile(data, (1, 99)))
    lo, hi = window
    scaled = np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
    x = torch.from_numpy(scaled)[None, None]
    size = tuple(int(s) for s in shape)
    return torch.nn.functional.interpolate(x, size=size, mode="trilinear")[0, 0].numpy()
