"""Issue 10: τ per encoder with provenance (never another model's), uncalibrated galleries say
so, one-shot open-set figures and `calibrate --fpir`, verify against every face, SFace end to
end, and warm `faces.encode` calls that do not rebuild dlib's models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from convlens import metrics
from convlens.cli import main
from convlens.errors import ConvlensError
from convlens.faces.gallery import Gallery
from convlens.faces.gallery.policy import shipped_threshold
from convlens.models import dlib_resnet, registry, sface


def unit(rng, n, d=16):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# -- open-set metrics ----------------------------------------------------------------------------


def test_one_shot_split_enrols_first_photos_and_keeps_strangers_out():
    labels = np.array(["a"] * 3 + ["b"] * 2 + ["c"] * 1 + ["d"] * 4)
    split = metrics.one_shot_split(labels, enrolled=2, seed=1)
    enrolled = set(labels[split.gallery])
    assert len(split.gallery) == 2 and "c" not in enrolled  # c has one photo: never enrolled
    assert all(labels[i] in enrolled for i in split.mated)
    assert not set(labels[split.non_mated]) & enrolled
    first = {lab: int(np.nonzero(labels == lab)[0][0]) for lab in enrolled}
    assert sorted(split.gallery.tolist()) == sorted(first.values())
    assert len(split.gallery) + len(split.mated) + len(split.non_mated) == len(labels)
    with pytest.raises(ConvlensError, match="cannot enrol 4 people"):
        metrics.one_shot_split(labels, enrolled=4)


def test_open_set_report_on_known_distances():
    # 1-d embeddings: enrolled at 0 and 10; mated probes 0.1 and 10.3 away; strangers 1..5 away.
    emb = np.array([[0.0], [0.1], [10.0], [10.3], [1.0], [2.0], [3.0], [4.0], [5.0]])
    labels = np.array(["a", "a", "b", "b", "x", "y", "z", "u", "v"])
    split = metrics.OpenSetSplit(np.array([0, 2]), np.array([1, 3]), np.arange(4, 9))
    r = metrics.open_set_report(emb, labels, split, (0.2, 0.01), {"t": 0.2})
    assert r["rank1"] == 1.0 and r["non_mated_probes"] == 5
    # FPIR 0.2 of 5 strangers: one may be named (the one at 1.0); τ stops below 2.0.
    e = r["at_fpir"]["0.2"]
    assert 1.0 <= e["threshold"] < 2.0 and e["fpir"] == 0.2 and e["dir"] == 1.0
    e = r["at_fpir"]["0.01"]
    assert e["threshold"] < 1.0 and e["fpir"] == 0.0 and not e["measurable"]
    assert r["at_threshold"]["t"] == {"threshold": 0.2, "dir": 0.5, "fpir": 0.0}


# -- τ per encoder -------------------------------------------------------------------------------


def test_registered_encoders_ship_a_threshold_with_provenance():
    for name, model_id in (("dlib-resnet", dlib_resnet.MODEL_ID), ("sface", sface.MODEL_ID)):
        extras = registry.get(name, task="face-encoder").extras
        tau, info = shipped_threshold(model_id)
        assert tau == extras["threshold"] and 0 < tau < 2
        assert info["encoder"] == name and info["set"] and info["fpir"] and info["protocol"]
    assert shipped_threshold("scratch-encoder") == (None, {})


def test_another_encoders_gallery_is_uncalibrated_not_dlibs(tmp_path):
    rng = np.random.default_rng(0)
    people = unit(rng, 3)
    with Gallery(tmp_path / "g.db", model_id="scratch-encoder") as g:
        for i, v in enumerate(people):
            g.enroll_embeddings(f"p{i}", v[None])
        assert g.threshold is None and not g.calibrated
        info = g.threshold_info
        assert info["threshold"] is None and "no threshold" in info["source"]
        (m,) = g.identify_embeddings(people[1:2])  # the enrolled vector itself: distance 0
        assert m.name is None and m.candidates[0].name == "p1" and m.threshold is None
        assert m.to_json()["calibrated"] is False
        with pytest.raises(ConvlensError, match="no threshold for encoder 'scratch-encoder'"):
            g.verify_embedding(people[1], "p1")
        g.set_threshold(0.5, {"source": "test"})
        (m,) = g.identify_embeddings(people[1:2])
        assert m.name == "p1" and m.calibrated and g.threshold_info["calibrated"]


def test_dlib_gallery_uses_dlibs_shipped_threshold(tmp_path):
    with Gallery(tmp_path / "g.db", model_id=dlib_resnet.MODEL_ID) as g:
        tau, _ = shipped_threshold(dlib_resnet.MODEL_ID)
        assert g.threshold == tau and not g.calibrated
        assert g.threshold_info["source"].startswith("shipped default for dlib-resnet")


# -- calibrate --fpir ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_orl(orl_dir, tmp_path_factory):
    """12 ORL people x 3 photos: 6 enrolled, 18 stranger photos (FPIR 0.1 measurable)."""
    root = tmp_path_factory.mktemp("orl12")
    for k in range(1, 13):
        (root / f"s{k}").mkdir()
        for i in (1, 2, 3):
            shutil.copy(orl_dir / f"s{k}" / f"{i}.pgm", root / f"s{k}" / f"{i}.pgm")
    return root


def test_calibrate_fpir_reports_open_set_and_stores_tau(small_orl, tmp_path, capsys):
    db = tmp_path / "g.db"
    argv = ["faces", "calibrate", str(small_orl), "--db", str(db), "--plot", "", "--json"]
    assert main([*argv, "--model", "sface", "--detector", "yunet", "--fpir", "0.1"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    o = report["open_set"]
    assert (o["enrolled"], o["mated_probes"], o["non_mated_probes"]) == (6, 12, 18)
    assert set(o["at_fpir"]) == {"0.01", "0.001", "0.1"} and not o["at_fpir"]["0.01"]["measurable"]
    with Gallery(db) as g:
        info = g.threshold_info
        assert info["calibrated"] and info["fpir"] == 0.1 and info["model_id"] == sface.MODEL_ID
        assert g.threshold == pytest.approx(o["at_fpir"]["0.1"]["threshold"])
    # An FPIR the 18 strangers cannot measure is refused, and nothing is stored.
    db2 = tmp_path / "g2.db"
    code = main(["faces", "calibrate", str(small_orl), "--db", str(db2), "--plot", "",
                 "--model", "sface", "--detector", "yunet", "--fpir", "0.01"])  # fmt: skip
    assert code != 0 and "stranger photos" in capsys.readouterr().err and not db2.exists()


@pytest.mark.parametrize("bad", ["0", "1", "nan", "-0.5", "x"])
def test_calibrate_fpir_is_validated_before_any_work(bad, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["faces", "calibrate", str(tmp_path), "--fpir", bad])
    assert e.value.code == 2 and "--fpir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["faces", "calibrate", str(tmp_path), "--fpir", "0.1", "--far", "0.1"])
    assert e.value.code == 2


# -- SFace end to end, verify with several faces ------------------------------------------------


@pytest.fixture(scope="module")
def sface_gallery(photos_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("sface") / "g.db"
    with Gallery(db, encoder="sface", encode_options={"detector": "yunet"}) as g:
        g.enroll("obama", [photos_dir / "obama.jpg"])
    return db


def test_sface_gallery_identifies_obama_not_biden_from_the_cli(sface_gallery, photos_dir, capsys):
    base = ["--db", str(sface_gallery), "--model", "sface", "--detector", "yunet"]
    code = main(["faces", "identify", str(photos_dir / "obama2.jpg"),
                 str(photos_dir / "biden.jpg"), *base])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0
    obama2, biden = out.out.strip().splitlines()
    assert "obama2.jpg: [" in obama2 and "] obama (" in obama2
    assert "unknown (nearest obama" in biden
    assert "uncalibrated gallery, shipped default for sface" in out.err
    assert main(["faces", "people", "--db", str(sface_gallery)]) == 0
    out = capsys.readouterr().out
    assert sface.MODEL_ID in out and "uncalibrated gallery" in out


def test_verify_compares_every_face(photos_dir, tmp_path, capsys):
    db = tmp_path / "g.db"
    group_photo = photos_dir / "obama_and_biden.jpg"
    with Gallery(db, encoder="sface", encode_options={"detector": "yunet"}) as g:
        g.enroll("biden", [photos_dir / "biden.jpg"])
        v = g.verify(group_photo, "biden")
        matches = g.identify(group_photo)
    # Three faces (Obama the largest, Biden, someone at the bottom right).
    (biden,) = [m for m in matches if m.name == "biden"]
    assert len(matches) == 3 and matches[0].box != biden.box
    assert v.match and v.faces == 3 and v.box == biden.box
    code = main(["faces", "verify", str(group_photo), "--as", "biden", "--db", str(db),
                 "--model", "sface", "--detector", "yunet"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0 and "match for biden" in out.out and "3 faces compared" in out.out
    assert "uncalibrated gallery" in out.err


def test_dlib_gallery_reopened_without_naming_the_encoder_keeps_it(tmp_path, photos_dir):
    db = tmp_path / "g.db"
    with Gallery(db, encoder="dlib-resnet") as g:
        g.enroll("obama", [photos_dir / "obama.jpg"])
    with Gallery(db) as g:
        (m,) = g.identify(photos_dir / "obama2.jpg")
        assert m.name == "obama" and g.encoder.model_id == dlib_resnet.MODEL_ID
    with Gallery(db, encoder="sface") as g, pytest.raises(ConvlensError, match="model"):
        g.identify(photos_dir / "obama2.jpg")


# -- warm calls ------------------------------------------------------------------------------------


def test_warm_encode_calls_do_not_rebuild_dlib_models(photos_dir):
    import convlens.faces as faces
    from convlens.faces import detect

    photo = photos_dir / "obama_small.jpg"
    faces.encode(photo, detector="hog")
    built = dict(detect.BUILT)
    for _ in range(3):  # each call runs in a new worker thread
        assert len(faces.encode(photo, detector="hog")) == 1
    assert built == detect.BUILT
