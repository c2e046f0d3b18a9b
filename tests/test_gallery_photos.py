"""The gallery and its CLI on real photos, with the real encoder (skipped without the data)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.faces import calibrate_cli, gallery_cli
from convlens.faces.gallery import Gallery


@pytest.fixture(scope="module")
def encoder():
    from convlens.models.face_models import load_face_model

    return load_face_model()


@pytest.fixture(scope="module")
def obama_gallery(tmp_path_factory, photos_dir, encoder):
    path = tmp_path_factory.mktemp("gallery") / "g.db"
    with Gallery(path, encoder) as g:
        g.enroll("obama", [photos_dir / "obama.jpg"])
    return path


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(required=True)
    gallery_cli.register(sub)
    calibrate_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_obama_identified_biden_not(obama_gallery, photos_dir, encoder):
    with Gallery(obama_gallery, encoder) as g:
        assert g.model_id == encoder.model_id
        for photo in ("obama2.jpg", "obama3.jpg"):
            (m,) = g.identify(photos_dir / photo)
            assert m.name == "obama" and m.distance < g.threshold, photo
            assert g.verify(photos_dir / photo, "obama").match
        (m,) = g.identify(photos_dir / "biden.jpg")
        assert m.name is None and m.candidates[0].name == "obama" and m.distance > g.threshold
        v = g.verify(photos_dir / "biden.jpg", "obama")
        assert not v.match and v.threshold == g.threshold and not v.calibrated


def test_group_photo_refused_unless_largest(tmp_path, photos_dir, encoder):
    with Gallery(tmp_path / "g.db", encoder) as g:
        with pytest.raises(ConvlensError, match="2 faces found") as refused:
            g.enroll("someone", [photos_dir / "two_people.jpg"])
        assert "--" not in str(refused.value)  # library messages never name CLI flags
        assert g.people() == []
        r = g.enroll("someone", [photos_dir / "two_people.jpg"], largest_face=True)
        assert len(r.added) == 1
        # the same photo again is skipped, not duplicated
        r = g.enroll("someone", [photos_dir / "two_people.jpg"], largest_face=True)
        assert r.added == [] and len(r.skipped) == 1
        assert g.people()[0].photos == 1


def test_photo_without_face_refused(tmp_path, encoder):
    blank = np.full((200, 200, 3), 128, np.uint8)
    with Gallery(tmp_path / "g.db", encoder) as g:
        with pytest.raises(ConvlensError, match="no face found"):
            g.enroll("nobody", [blank])
        assert g.identify(blank) == []


def test_cli_enroll_identify_verify_forget(tmp_path, photos_dir, capsys, monkeypatch):
    db = tmp_path / "cli.db"
    monkeypatch.setenv("CONVLENS_DB", str(db))
    assert run_cli("enroll", "obama", str(photos_dir / "obama.jpg")) == 0
    assert "enrolled obama" in capsys.readouterr().out
    code = run_cli(
        "identify",
        str(photos_dir / "obama2.jpg"),
        str(tmp_path / "missing.jpg"),
        str(photos_dir / "obama_and_biden.jpg"),
        "--json",
        "-k",
        "1",
    )
    assert code == 1  # one photo failed; the batch went on
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [ln["path"] for ln in lines] == [
        str(photos_dir / "obama2.jpg"),
        str(tmp_path / "missing.jpg"),
        str(photos_dir / "obama_and_biden.jpg"),
    ]
    assert lines[0]["error"] is None and lines[0]["faces"][0]["name"] == "obama"
    assert len(lines[0]["faces"][0]["box"]) == 4
    assert lines[0]["faces"][0]["distance"] < lines[0]["threshold"]
    assert "no such file" in lines[1]["error"] and lines[1]["faces"] == []
    names = [f["name"] for f in lines[2]["faces"]]
    assert names.count("obama") == 1 and len(names) >= 2  # biden (and a bystander) unknown
    assert run_cli("verify", str(photos_dir / "obama3.jpg"), "--as", "obama") == 0
    assert run_cli("verify", str(photos_dir / "biden.jpg"), "--as", "obama") == 1
    assert "no match" in capsys.readouterr().out
    assert run_cli("rename", "obama", "barack") == 0
    assert run_cli("people", "--json") == 0
    out = capsys.readouterr().out.splitlines()[-1]
    assert [p["name"] for p in json.loads(out)["people"]] == ["barack"]
    assert run_cli("forget", "barack") == 0
    with pytest.raises(ConvlensError, match="no one called"):
        run_cli("verify", str(photos_dir / "obama3.jpg"), "--as", "barack")


@pytest.fixture(scope="module")
def small_orl(tmp_path_factory, orl_dir):
    """6 ORL people x 5 photos, linked into a labelled folder."""
    root = tmp_path_factory.mktemp("orl6")
    for n in range(1, 7):
        (root / f"s{n}").mkdir()
        for k in range(1, 6):
            (root / f"s{n}" / f"{k}.pgm").symlink_to(orl_dir / f"s{n}" / f"{k}.pgm")
    return root


def test_cli_calibrate_stores_threshold_and_plots(small_orl, tmp_path, capsys):
    db = tmp_path / "cal.db"
    plot = tmp_path / "roc.png"
    args = ["calibrate", str(small_orl), "--detector", "auto", "--upsample", "2"]
    assert run_cli(*args, "--far", "1e-2", "--db", str(db), "--plot", str(plot)) == 0
    out = capsys.readouterr().out
    assert "EER" in out and "stored τ" in out and plot.stat().st_size > 1000
    with Gallery(db) as g:
        info = g.threshold_info
        assert info["far"] == 1e-2 and 0.2 < g.threshold < 2.0  # SFace: unit vectors
        assert info["impostor_pairs"] == 30 * 29 // 2 - 6 * 10
    with pytest.raises(ConvlensError, match="impostor pairs"):
        run_cli(*args, "--far", "1e-3", "--db", str(db), "--plot", "")


def test_cli_train_verifier_and_use_it(small_orl, tmp_path, photos_dir, capsys):
    out = tmp_path / "v.pt"
    args = ["--detector", "auto", "--upsample", "2", "--epochs", "50"]
    assert run_cli("train-verifier", str(small_orl), "-o", str(out), "--kind", "chi2", *args) == 0
    assert "trained a chi2 verifier" in capsys.readouterr().out
    db = tmp_path / "v.db"
    assert run_cli("enroll", "obama", str(photos_dir / "obama.jpg"), "--db", str(db)) == 0
    capsys.readouterr()
    code = run_cli(
        "verify", str(photos_dir / "obama2.jpg"), "--as", "obama", "--db", str(db),
        "--verifier", str(out), "--json",
    )  # fmt: skip
    v = json.loads(capsys.readouterr().out)
    assert (
        v["scorer"] == "verifier" and 0 <= v["distance"] <= 1 and code == (0 if v["match"] else 1)
    )
