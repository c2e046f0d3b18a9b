"""Audio and volume readers: real data round-trips, bad input is one clear error."""

import struct

import nibabel as nib
import numpy as np
import pytest
import soundfile as sf

from convlens.audio import read_audio, write_audio
from convlens.errors import ConvlensError
from convlens.volumes import io as vio
from convlens.volumes import read_volume


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    sf.write(path, np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1) * 0.5, 16000)
    return path


def test_audio_roundtrip_downmix_and_resample(wav, tmp_path):
    clip = read_audio(wav)
    assert clip.rate == 16000 and clip.samples.shape == (16000,)
    assert abs(np.abs(clip.samples).max() - 0.25) < 1e-3  # stereo averaged to mono
    low = read_audio(wav, rate=8000)
    assert low.rate == 8000 and len(low.samples) == 8000
    spectrum = np.abs(np.fft.rfft(low.samples))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s: bin = Hz
    out = write_audio(tmp_path / "out.flac", low.samples, 8000)
    assert np.allclose(read_audio(out).samples, low.samples, atol=1e-3)


def _bad_audio(tmp_path, wav):
    data = wav.read_bytes()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all\n" * 10)
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    (tmp_path / "headeronly.wav").write_bytes(data[:44])
    (tmp_path / "folder.wav").mkdir()
    # a header promising 2 hours of 8 kHz audio with the samples present as a sparse file
    long = bytearray(data[:44])
    frames = 8000 * 7200
    long[24:28] = struct.pack("<I", 8000)
    long[28:32] = struct.pack("<I", 8000 * 4)
    long[40:44] = struct.pack("<I", frames * 4)
    huge = tmp_path / "huge.wav"
    with huge.open("wb") as f:
        f.write(bytes(long))
        f.truncate(44 + frames * 4)
    return {
        "empty.wav": "empty file",
        "text.wav": "not a readable audio file",
        "trunc.wav": "truncated",
        "headeronly.wav": "no audio samples",
        "folder.wav": "is a folder",
        "missing.wav": "no such file",
        "huge.wav": "over the",
    }


def test_bad_audio_is_one_line_error(tmp_path, wav):
    for name, words in _bad_audio(tmp_path, wav).items():
        with pytest.raises(ConvlensError) as e:
            read_audio(tmp_path / name)
        assert words in str(e.value) and name in str(e.value) and "\n" not in str(e.value)


def test_volume_formats_agree(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 2000, size=(5, 7, 6)).astype(np.int16)
    np.save(tmp_path / "v.npy", vol)
    np.savez(tmp_path / "v.npz", volume=vol, spacing_mm=np.array([2.0, 0.5, 0.5]))
    # NIfTI stores (x, y, z): the reader gives (z, y, x) like the shared data.
    nib.save(
        nib.Nifti1Image(vol.transpose(2, 1, 0), np.diag([0.5, 0.5, 2.0, 1])), tmp_path / "v.nii.gz"
    )
    for name in ("v.npy", "v.npz", "v.nii.gz"):
        got = read_volume(tmp_path / name)
        assert got.data.dtype == np.float32 and np.array_equal(got.data, vol), name
    assert read_volume(tmp_path / "v.npz").spacing == (2.0, 0.5, 0.5)
    assert read_volume(tmp_path / "v.nii.gz").spacing == (2.0, 0.5, 0.5)


def test_dicom_folder_is_sorted_by_position_and_rescaled(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = tmp_path / "dcm"
    folder.mkdir()
    for i, z in enumerate([3.0, 1.0, 2.0]):  # written out of order
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = FileDataset(str(folder / f"{i}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.Rows, ds.Columns = 4, 3
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation, ds.SamplesPerPixel = 1, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.ImagePositionPatient = [0, 0, z]
        ds.PixelSpacing = [0.7, 0.7]
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
        ds.PixelData = np.full((4, 3), int(z), np.int16).tobytes()
        ds.save_as(str(folder / f"{i}.dcm"), enforce_file_format=True)
    got = read_volume(folder)
    assert got.data.shape == (3, 4, 3)
    assert got.data[:, 0, 0].tolist() == [2 - 1024, 4 - 1024, 6 - 1024]
    assert got.spacing == (1.0, 0.7, 0.7)


def test_bad_volumes_are_one_line_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    np.save(tmp_path / "empty3.npy", np.zeros((0, 4, 4)))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b garbage")
    np.save(tmp_path / "full.npy", np.zeros((8, 8, 8), np.float32))
    data = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[: len(data) // 2])
    # A header claiming 2048^3 voxels: refused from the header, nothing decoded.
    with (tmp_path / "huge.npy").open("wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (2048, 2048, 2048)}
        )
    expect = {
        "flat.npy": "not a 3-D volume",
        "empty3.npy": "empty volume",
        "empty.npz": "empty file",
        "junk.nii.gz": "cannot read volume",
        "trunc.npy": "cannot read volume",
        "huge.npy": "voxel limit",
        "missing.nii": "no such file",
    }
    for name, words in expect.items():
        with pytest.raises(ConvlensError) as e:
            read_volume(tmp_path / name)
        assert words in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    assert vio.MAX_VOXELS < 2048**3


def test_shared_head_ct(shared_volumes):
    vol = read_volume(shared_volumes / "head_ct.npz")
    assert vol.data.shape == (108, 256, 256)
    assert vol.spacing[0] == 1.5 and vol.data.min() == -1024
