"""Trainer, data and CLI on tiny synthetic "faces" (a few steps each; full runs are benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlens.errors import ConvlensError
from convlens.train.data import ChipSet, PKSampler, load_face_folder, split_people
from convlens.train.trainer import TrainConfig, Trainer

SIZE = 48  # the trainer and SmallConvNet take any chip size; small keeps the tests fast


# Tiny nets run fastest on one thread, and far faster when the CPU is shared.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic(people=6, per=4, seed=0, size=SIZE, prefix="p") -> ChipSet:
    """Each person is a coarse random colour pattern; each chip adds heavy noise to it."""
    rng = np.random.default_rng(seed)
    chips, labels = [], []
    for p in range(people):
        base = np.kron(rng.uniform(0, 255, (4, 4, 3)), np.ones((size // 4, size // 4, 1)))
        for _ in range(per):
            chips.append(np.clip(base + rng.normal(0, 60, base.shape), 0, 255).astype(np.uint8))
            labels.append(p)
    names = [f"{prefix}{i}" for i in range(people)]
    return ChipSet(np.stack(chips), np.array(labels), names, [""] * len(labels))


def tiny(**kw) -> TrainConfig:
    base = dict(
        init="scratch",
        embedding_dim=16,
        small_input=32,
        small_width=8,
        epochs=1,
        steps=4,
        batch_p=3,
        batch_k=2,
        jitter=2,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_loss(tmp_path):
    losses = {}
    for loss, mining in (("triplet", "hard"), ("siamese", "semi-hard")):
        cfg = tiny(loss=loss, mining=mining, epochs=1, steps=20, lr=3e-3, batch_p=4, margin=0.5)
        t = Trainer(cfg, synthetic(), None, tmp_path / f"{loss}.pt", progress=False)
        t.fit()
        curve = [row[1] for row in t.step_log]
        losses[loss] = (np.mean(curve[:6]), np.mean(curve[-6:]))
        assert losses[loss][1] < 0.7 * losses[loss][0], (loss, losses[loss])
        assert (tmp_path / f"{loss}.epochs.csv").exists() and (tmp_path / f"{loss}.png").exists()
    # Siamese training leaves its pair classifier beside the encoder, tied to its model_id.
    from convlens.faces.verifier import load_verifier
    from convlens.models.face_models import load_face_model

    verifier = load_verifier(tmp_path / "siamese.verifier.pt")
    assert verifier.model_id == load_face_model(tmp_path / "siamese.pt").model_id
    assert not (tmp_path / "triplet.verifier.pt").exists()


def test_resume_equals_uninterrupted_run(tmp_path):
    train, val = synthetic(), synthetic(3, 3, seed=1, prefix="v")
    cfg = tiny(epochs=2, steps=3, mining="semi-hard")
    straight = Trainer(cfg, train, val, tmp_path / "a.pt", progress=False)
    straight.fit()
    first = Trainer(cfg, train, val, tmp_path / "b.pt", progress=False)
    first.fit(until_epoch=1)  # "interrupted" after epoch 1; its checkpoint is b.ckpt
    assert not (tmp_path / "b.pt").exists()
    again = Trainer(cfg, train, val, tmp_path / "b.pt", progress=False)
    again.resume(tmp_path / "b.ckpt")
    again.fit()
    a, b = straight.objective.state_dict(), again.objective.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.get("train_loss") for r in straight.history] == [
        r.get("train_loss") for r in again.history
    ]
    # A checkpoint from other settings is refused with the differences named.
    other = Trainer(tiny(epochs=2, steps=3, mining="hard"), train, val, tmp_path / "c.pt")
    with pytest.raises(ConvlensError, match="mining"):
        other.resume(tmp_path / "b.ckpt")


def test_saved_model_loads_with_a_new_id_and_right_dim(tmp_path):
    from convlens.models.face_models import load_face_model

    out = tmp_path / "m.pt"
    t = Trainer(tiny(steps=2), synthetic(), synthetic(3, 2, 1, prefix="v"), out, progress=False)
    last = t.fit()
    assert {"val_tar_far_1e-2", "val_tar_far_1e-3", "val_eer"} <= set(last)
    model = load_face_model(out)
    assert model.model_id.startswith("small_convnet-")
    assert model.model_id != "small_convnet-untrained"
    assert model.model_id == t.objective.encoder.model_id
    emb = model(torch.rand(3, 3, 150, 150) * 255)
    assert emb.shape == (3, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    from convlens import faces  # the face pipeline takes the file like any encoder

    chips = np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    assert faces.embed_chips(chips, model=out).shape == (2, 16)


def test_train_from_freezes_earlier_layers(tmp_path):
    t = Trainer(tiny(train_from="stage3", steps=2), synthetic(), None, tmp_path / "m.pt")
    assert t.frozen == ["stem", "stage1", "stage2"]
    before = {k: v.clone() for k, v in t.objective.encoder.state_dict().items()}
    t.fit()
    after = t.objective.encoder.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == k.startswith(("stage3.", "embed.")) or k.endswith("num_batches_tracked")
    with pytest.raises(ConvlensError, match="no such layer"):
        Trainer(tiny(train_from="conv9"), synthetic(), None, tmp_path / "x.pt")


def test_pk_sampler_is_deterministic_per_step_and_rank():
    labels = np.repeat(np.arange(5), [4, 4, 1, 3, 2])
    s = PKSampler(labels, p=3, k=4, seed=7)
    b = s.batch(5)
    assert len(b) == 12 and np.array_equal(b, PKSampler(labels, 3, 4, seed=7).batch(5))
    assert not np.array_equal(b, PKSampler(labels, 3, 4, seed=7, rank=1).batch(5))
    people = labels[b].reshape(3, 4)
    assert (people == people[:, :1]).all() and len(set(people[:, 0])) == 3
    assert 2 not in set(labels[b])  # a person with a single chip gives no positive pair
    with pytest.raises(ConvlensError):
        PKSampler(np.array([0, 1, 1]), 2, 2)


def test_split_people():
    people = [f"s{i}" for i in range(1, 11)]
    train, val = split_people(people, ["s9", "s10"])
    assert val == ["s9", "s10"] and len(train) == 8
    train, val = split_people(people, 3, seed=1)
    assert len(val) == 3 and not set(train) & set(val)
    assert split_people(people, 3, seed=1) == (train, val)
    assert len(split_people(people, val_split=0.5)[1]) == 5
    with pytest.raises(ConvlensError):
        split_people(people, ["bob"])


def _photo_folder(tmp_path):
    from PIL import Image

    data = synthetic(3, 3, size=40)
    root = tmp_path / "people"
    for chip, label in zip(data.chips, data.labels, strict=True):
        d = root / data.people[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(chip).save(d / f"{len(list(d.iterdir()))}.png")
    (root / "p0" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "p1" / "notes.txt").write_text("ignored: not an image suffix")
    return root


def test_face_folder_cache_and_skip_report(tmp_path):
    from convlens.images import load_image

    calls = []

    def chipper(path):
        calls.append(path)
        try:
            img = load_image(path)
        except ConvlensError:
            return 0, None, "unreadable"
        return 1, np.resize(img, (150, 150, 3)), ""

    root = _photo_folder(tmp_path)
    cache = tmp_path / "cache"
    s = load_face_folder(root, cache, chipper=chipper, progress=False)
    assert len(s) == 9 and s.people == ["p0", "p1", "p2"] and len(calls) == 10
    assert s.skipped == [("p0/broken.jpg", "unreadable")]
    assert "skipped 1 photos: 1 unreadable" in s.report()
    again = load_face_folder(root, cache, chipper=chipper, progress=False)
    assert len(calls) == 10  # served from the cache
    assert np.array_equal(again.chips, s.chips) and again.skipped == s.skipped
    (root / "p2" / "0.png").unlink()  # the folder changed: aligned again
    assert len(load_face_folder(root, cache, chipper=chipper, progress=False)) == 8
    sub = s.subset(["p2", "p0"])
    assert sub.people == ["p2", "p0"] and sorted(set(sub.labels.tolist())) == [0, 1]


def test_cli_trains_from_scratch(tmp_path, monkeypatch, capsys):
    from convlens import cli
    from convlens.models.face_models import load_face_model
    from convlens.train import data

    def fake_pipeline(detector, upsample):
        from convlens.images import load_image

        return lambda path: (1, np.resize(load_image(path), (150, 150, 3)), "")

    monkeypatch.setattr(data, "pipeline_chipper", fake_pipeline)
    root = _photo_folder(tmp_path)
    (root / "p0" / "broken.jpg").unlink()
    out = tmp_path / "enc.pt"
    args = ["train", "triplet", str(root), "-o", str(out), "--init", "scratch"]
    args += ["--embedding-dim", "8", "--epochs", "1", "--steps", "2", "--batch-p", "2"]
    args += ["--batch-k", "2", "--val-people", "1", "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert cli.main(args) == 0
    assert load_face_model(out)(torch.zeros(1, 3, 150, 150)).shape == (1, 8)
    assert "model_id small_convnet-" in capsys.readouterr().out
    assert cli.main(args[:-1] + ["--init", "pretrained"]) == 2  # 8-d from a 128-d encoder


def test_validation_subset_caps_and_needs_pairs():
    from convlens.train.trainer import validation_subset

    val = synthetic(5, 4)
    assert len(validation_subset(val, 8, seed=0)) == 8
    assert validation_subset(val, 100, seed=0) is val
    singles = ChipSet(val.chips[::4], val.labels[::4], val.people, val.paths[::4])
    assert validation_subset(singles, 100, seed=0) is None  # no genuine pair
    assert validation_subset(val.subset(["p0"]), 100, seed=0) is None  # no impostor pair
    assert validation_subset(None, 100, seed=0) is None


def test_fine_tune_pretrained_last_stage_saves_a_new_encoder(tmp_path):
    from convlens.models.face_models import load_face_model

    cfg = tiny(init="pretrained", embedding_dim=128, train_from="stage5", batch_p=2, steps=1)
    cfg.lr = 1e-4
    t = Trainer(cfg, synthetic(3, 2, size=150), None, tmp_path / "ft.pt", progress=False)
    assert t.frozen == ["stem", "stage1", "stage2", "stage3", "stage4"]
    pretrained_id = t.objective.encoder.model_id
    before = {k: v.clone() for k, v in t.objective.encoder.state_dict().items()}
    t.fit()
    tuned = load_face_model(tmp_path / "ft.pt")
    assert type(tuned).__name__ == "DlibFaceResNet"
    assert tuned.model_id.startswith("dlib_resnet-") and tuned.model_id != pretrained_id
    state = tuned.state_dict()
    changed = {k.split(".")[0] for k in state if not torch.equal(state[k], before[k])}
    assert changed and changed <= {"stage5", "fc"}
    assert tuned(torch.zeros(1, 3, 150, 150)).shape == (1, 128)
