"""Style transfer end to end at tiny sizes: the optimiser lowers the costs it should, options
behave, and bad input fails with a clear error before any work starts."""

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.cli import main
from convlens.errors import ConvlensError
from convlens.style import run_transfer, transfer

skimage_data = pytest.importorskip("skimage.data")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def content():
    return np.asarray(Image.fromarray(skimage_data.chelsea()).resize((96, 64)))


@pytest.fixture(scope="module")
def style():
    rng = np.random.default_rng(0)
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = (250, 200, 30)
    stripes[::6, :] = (20, 40, 200)
    return np.clip(stripes + rng.integers(0, 40, stripes.shape), 0, 255).astype(np.uint8)


def test_content_only_from_noise_recovers_content(content, style):
    r = run_transfer(
        content,
        style,
        size=64,
        steps=60,
        init="noise",
        style_weight=0,
        lr=0.05,
        progress=False,
    )
    first, last = r.history[0]["content"], r.history[-1]["content"]
    assert last <= 0.1 * first, (first, last)


def test_style_only_lowers_style_cost(content, style):
    r = run_transfer(
        content, style, size=64, steps=30, content_weight=0, style_weight=1, lr=0.05, progress=False
    )
    first, last = r.history[0]["style"], r.history[-1]["style"]
    assert last < 0.5 * first, (first, last)


def test_adam_full_run_shapes_seed_and_tv(content, style):
    opts = dict(size=48, steps=6, init="content+noise", seed=3, progress=False, tv_weight=1.0)
    a = transfer(content, style, **opts)
    b = transfer(content, style, **opts)
    assert a.size == (48, 32) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))  # same seed, same pixels
    c = transfer(content, style, **{**opts, "seed": 4})
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_blend_colours_scales_frames_and_gif(content, style, tmp_path):
    r = run_transfer(
        content,
        [style, content],
        style_weights=[0.7, 0.3],
        size=64,
        steps=4,
        scales=2,
        preserve_colors=True,
        style_scale=1.5,
        frames=tmp_path / "frames",
        gif=tmp_path / "run.gif",
        frame_every=2,
        progress=False,
    )
    assert r.sizes == [(21, 32), (43, 64)] or r.sizes[-1] == (43, 64)
    assert r.image.size == (64, 43)
    assert len(list((tmp_path / "frames").glob("*.png"))) >= 3
    with Image.open(tmp_path / "run.gif") as gif:
        assert gif.n_frames >= 3
    # colours kept: the output's chroma follows the content's, not the blue/yellow style
    out = np.asarray(r.image, np.float64)
    ref = np.asarray(Image.fromarray(content).resize((64, 43)), np.float64)
    assert abs(out.mean(axis=(0, 1)) - ref.mean(axis=(0, 1))).max() < 20


def test_bad_inputs_fail_early(content, style, tmp_path):
    with pytest.raises(ConvlensError, match="no such file"):
        transfer(tmp_path / "missing.jpg", style)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ConvlensError, match="not an image"):
        transfer(content, junk)
    with pytest.raises(ConvlensError, match="too small"):
        transfer(content, np.zeros((8, 40, 3), np.uint8))
    with pytest.raises(ConvlensError, match="GiB"):  # the memory plan refuses it
        transfer(content, style, size=30_000, progress=False)
    with pytest.raises(ConvlensError, match="size 200000 is out of range"):
        transfer(content, style, size=200_000, progress=False)
    with pytest.raises(ConvlensError, match="style weights"):
        transfer(content, [style, style], style_weights=[1.0])
    with pytest.raises(ConvlensError, match="unknown style option"):
        transfer(content, style, colour=True)
    with pytest.raises(ConvlensError, match="optimizer"):
        transfer(content, style, optimizer="sgd")
    with pytest.raises(ConvlensError, match="device"):
        transfer(content, style, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConvlensError, match="no CUDA"):
            transfer(content, style, device="cuda")
    with pytest.raises(ConvlensError, match="no layer named"):
        transfer(content, style, style_layers=["blocks.99"], size=32, steps=1)


def test_cli(content, style, tmp_path, capsys):
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    Image.fromarray(content).save(c)
    Image.fromarray(style).save(s)
    out = tmp_path / "out.png"
    code = main(
        [
            "style",
            str(c),
            str(s),
            "-o",
            str(out),
            "--size",
            "32",
            "--steps",
            "2",
            "--quiet",
            "--tv",
            "0.1",
            "--optimizer",
            "lbfgs",
        ]
    )
    assert code == 0 and Image.open(out).size == (32, 21)
    assert "wrote" in capsys.readouterr().out
    code = main(["style", str(c), str(tmp_path / "nope.jpg"), "-o", str(out), "--quiet"])
    assert code == 2 and "no such file" in capsys.readouterr().err
