"""Image loading: every format the pipeline meets, EXIF rotation, and one-line errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from convlens.errors import ConvlensError
from convlens.images import MAX_PIXELS, load_image


def _gradient(w=40, h=30) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None, None]
    return np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                           np.full((h, w, 1), 128.0)], 2).astype(np.uint8)  # fmt: skip


def _check_rgb(arr: np.ndarray, shape=(30, 40)) -> None:
    assert arr.dtype == np.uint8 and arr.shape == (*shape, 3)


@pytest.mark.parametrize(
    "name,kwargs", [("a.jpg", {"quality": 95}), ("a.png", {}), ("a.bmp", {}), ("a.webp", {})]
)
def test_rgb_formats_round_trip(tmp_path, name, kwargs):
    rgb = _gradient()
    Image.fromarray(rgb).save(tmp_path / name, **kwargs)
    out = load_image(tmp_path / name)
    _check_rgb(out)
    tol = 0 if name.endswith((".png", ".bmp")) else 12
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() <= tol


def test_grey_pgm_and_png_become_rgb(tmp_path):
    grey = _gradient()[:, :, 0]
    for name in ("g.pgm", "g.png"):
        Image.fromarray(grey, mode="L").save(tmp_path / name)
        out = load_image(tmp_path / name)
        _check_rgb(out)
        assert (out == grey[:, :, None]).all()


def test_png_16_bit_is_scaled_to_8_bit(tmp_path):
    v = np.full((30, 40), 65535 // 2, np.uint16)
    v[:, 20:] = 65535
    Image.fromarray(v).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = load_image(tmp_path / "deep.png")
    _check_rgb(out)
    assert abs(int(out[0, 0, 0]) - 128) <= 1 and out[0, 39, 0] == 255


def test_rgba_composites_on_white(tmp_path):
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255  # left half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    out = load_image(tmp_path / "alpha.png")
    _check_rgb(out)
    assert (out[0, 0] == 255).all()
    assert out[0, 39].tolist() == [200, 0, 0]


def test_palette_png_and_gif(tmp_path):
    img = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.save(tmp_path / "pal.png")
    img.save(tmp_path / "pal.gif")
    for name in ("pal.png", "pal.gif"):
        out = load_image(tmp_path / name)
        _check_rgb(out)
        assert np.abs(out.astype(int) - _gradient().astype(int)).mean() < 20


def test_exif_orientation_is_applied(tmp_path):
    rgb = _gradient()  # 40 wide, 30 tall
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rot.jpg")
    _check_rgb(out, shape=(40, 30))
    expected = np.rot90(rgb, k=-1)
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 12


def test_arrays_and_pil_images():
    rgb = _gradient()
    assert (load_image(rgb) == rgb).all()
    assert (load_image(Image.fromarray(rgb)) == rgb).all()
    _check_rgb(load_image(rgb[:, :, 0]))
    _check_rgb(load_image(np.dstack([rgb, np.full((30, 40), 255, np.uint8)])))
    floats = load_image(rgb.astype(np.float32) / 255.0)
    assert np.abs(floats.astype(int) - rgb.astype(int)).max() <= 1
    with pytest.raises(ConvlensError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5), np.uint8))


def _one_line(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, not a JPEG")
    with pytest.raises(ConvlensError) as err:
        load_image(path)
    assert "not an image" in _one_line(err, path)


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(400, 300)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConvlensError) as err:
        load_image(path)
    assert "cannot decode" in _one_line(err, path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConvlensError) as err:
        load_image(tmp_path / "nope.png")
    assert "no such file" in _one_line(err, tmp_path / "nope.png")
    with pytest.raises(ConvlensError) as err:
        load_image(tmp_path)
    assert "folder" in _one_line(err, tmp_path)


def test_over_100_megapixels_is_refused_before_decoding(tmp_path):
    # A PNG header claiming 20000 x 6000 pixels (120 MP), with no image data behind it.
    def chunk(kind: bytes, data: bytes) -> bytes:
        import zlib

        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 20000, 6000, 8, 2, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    assert MAX_PIXELS < 20000 * 6000
    with pytest.raises(ConvlensError) as err:
        load_image(path)
    assert "megapixel" in _one_line(err, path)
