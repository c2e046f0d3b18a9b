"""dlib's face encoder re-implemented in torch: parity with dlib on every shared face, loading
from dlib's .dat (cache, bad files), fine-tuning."""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.images import list_images, load_image
from convlens.models import dlib_resnet
from convlens.models.dlib_resnet import DlibFaceResNet, load_dlib_face_resnet
from convlens.models.weights import dlib_model_file

dlib = pytest.importorskip("dlib")

DAT = "dlib_face_recognition_resnet_model_v1"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # One converted-weights cache for this module's tests, not the user's.
    monkeypatch.setenv("CONVLENS_CACHE", str(tmp_path_factory.getbasetemp() / "dlib-cache"))


@pytest.fixture(scope="module")
def model() -> DlibFaceResNet:
    return load_dlib_face_resnet()


def _dlib_chips(photos_dir, orl_dir) -> tuple[list[str], np.ndarray]:
    """Every face in the shared data as dlib's 150x150 chips (HOG, 5 landmarks, padding .25).

    Photos: upsample 1. ORL: upsample 2, and the whole image where HOG finds nothing.
    """
    local = threading.local()  # dlib's detector keeps scratch state: one per thread
    predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks")))
    jobs = [(p, 1, False) for p in list_images(photos_dir)]
    jobs += [(p, 2, True) for p in list_images(orl_dir)]

    def detect(job):
        path, upsample, whole_if_none = job
        img = load_image(path)
        if not hasattr(local, "detector"):
            local.detector = dlib.get_frontal_face_detector()
        rects = list(local.detector(img, upsample))  # dlib releases the GIL here
        if not rects and whole_if_none:
            rects = [dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)]
        return img, rects

    names, chips = [], []
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for (path, _, _), (img, rects) in zip(jobs, pool.map(detect, jobs), strict=True):
            for i, rect in enumerate(rects):
                chips.append(dlib.get_face_chip(img, predictor(img, rect), 150, 0.25))
                names.append(f"{path.parent.name}/{path.name}#{i}")
    return names, np.stack(chips)


def test_matches_dlib_on_every_shared_face(model, photos_dir, orl_dir):
    names, chips = _dlib_chips(photos_dir, orl_dir)
    n_photo_faces = sum(n.startswith(photos_dir.name + "/") for n in names)
    assert n_photo_faces >= 15 and len(names) >= n_photo_faces + 400

    dlib_net = dlib.face_recognition_model_v1(str(dlib_model_file(DAT)))
    want = np.array([np.asarray(dlib_net.compute_face_descriptor(c)) for c in chips])

    got = []
    with torch.inference_mode():
        for start in range(0, len(chips), 64):
            x = torch.from_numpy(chips[start : start + 64]).permute(0, 3, 1, 2).float()
            got.append(model(x).numpy())
    got = np.concatenate(got)

    assert got.shape == want.shape == (len(names), 128) and got.dtype == np.float32
    err = np.abs(got - want).max(axis=1)
    worst = int(err.argmax())
    assert err[worst] <= 1e-4, f"{names[worst]}: max |ours - dlib| = {err[worst]:.2e}"


def test_layer_shapes_follow_dlib(model):
    # dlib pads only stride-1 layers, and add_prev keeps the larger of two shapes: the 3x3
    # output of stage4's stride-2 conv is added to the 4x4 pooled skip and the stage stays 4x4.
    shapes = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
        for name in ("stem", "stage1", "stage2", "stage3", "stage4", "stage5")
    ]
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 150, 150))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 128)
    assert shapes == {
        "stem": (32, 35, 35),
        "stage1": (32, 35, 35),
        "stage2": (64, 17, 17),
        "stage3": (128, 8, 8),
        "stage4": (256, 4, 4),
        "stage5": (256, 2, 2),
    }
    conv = model.stem.conv
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (2, 2), (0, 0))
    assert model.stage2[0].conv1.padding == (0, 0) and model.stage2[1].conv1.padding == (1, 1)


def test_fine_tunes(model):
    net = DlibFaceResNet()
    net.load_state_dict(model.state_dict())  # the registry's way: build, then load weights
    net.train()
    x = torch.rand(2, 3, 150, 150) * 255
    before = net(x)
    before.pow(2).sum().backward()
    before = before.detach()
    assert net.stage3[0].affine1.weight.grad is not None
    assert net.stem.conv.weight.grad.abs().sum() > 0
    torch.optim.SGD(net.parameters(), lr=1e-3).step()
    with torch.no_grad():
        after = net(x)
    assert (after - before).abs().max() > 1e-5
    assert len(list(net.parameters())) == 2 * 29 + 2 * 29 + 1  # convs, affines, fc


def test_warm_load_reads_cache_not_dat(tmp_path, monkeypatch):
    dat = tmp_path / f"{DAT}.dat"
    shutil.copyfile(dlib_model_file(DAT), dat)
    monkeypatch.setenv("CONVLENS_CACHE", str(tmp_path / "cache"))
    first = load_dlib_face_resnet(dat)
    assert first.model_id == DAT and not first.training
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1

    def no_parse(*a, **k):
        raise AssertionError("parsed the .dat again")

    monkeypatch.setattr(dlib_resnet, "state_dict_from_dat", no_parse)
    second = load_dlib_face_resnet(dat)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_CACHE", str(tmp_path))
    load_dlib_face_resnet()
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(b"garbage")
    model = load_dlib_face_resnet()
    assert model.model_id == DAT
    assert entry.stat().st_size > 20_000_000


@pytest.mark.parametrize("kind", ["garbage", "truncated", "other_dlib_model", "empty"])
def test_bad_dat_gives_one_line_error_naming_the_file(tmp_path, kind):
    real = dlib_model_file(DAT).read_bytes()
    bad = tmp_path / f"{kind}.dat"
    if kind == "garbage":
        bad.write_bytes(os.urandom(5000))
    elif kind == "truncated":
        bad.write_bytes(real[: len(real) // 2])
    elif kind == "other_dlib_model":
        shutil.copyfile(dlib_model_file("shape_predictor_5_face_landmarks"), bad)
    else:
        bad.write_bytes(b"")
    with pytest.raises(ConvlensError, match=str(bad)) as info:
        load_dlib_face_resnet(bad)
    assert "\n" not in str(info.value)


def test_missing_dat(tmp_path):
    with pytest.raises(ConvlensError, match="no such"):
        load_dlib_face_resnet(tmp_path / "nothing.dat")


def test_foreign_weights_get_their_own_model_id(tmp_path, model):
    # Same network, different numbers: the gallery must not mix its embeddings with dlib's.
    real = bytearray(dlib_model_file(DAT).read_bytes())
    real[-1000] ^= 0x01  # a bit of the fc weights
    other = tmp_path / "tuned.dat"
    other.write_bytes(bytes(real))
    tuned = load_dlib_face_resnet(other)
    assert tuned.model_id != model.model_id and "tuned" in tuned.model_id
