"""The CLI convention on the faces commands: limits are usage errors (exit 2) before any work,
outputs are checked first, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convlens.cli import main
from convlens.errors import ConvlensError
from convlens.faces import calibrate
from convlens.faces.gallery import Gallery

ROOT = Path(__file__).resolve().parents[1]


def _usage_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(["faces", *map(str, argv)])
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def no_encoding(monkeypatch):
    """Any attempt to encode fails the test: the command must stop before the work."""

    def refuse(*a, **k):
        raise AssertionError("encoded photos before checking the options")

    monkeypatch.setattr(calibrate, "encode_labelled", refuse)
    monkeypatch.setattr("convlens.faces.pipeline._encode_stream", refuse)


@pytest.mark.parametrize(
    "argv",
    [
        ["encode", "x.jpg", "--batch-size", "0"],
        ["encode", "x.jpg", "--batch-size", "-3"],
        ["encode", "x.jpg", "--jitter", "100000"],
        ["encode", "x.jpg", "--min-face", "0"],
        ["encode", "x.jpg", "--min-face", "nan"],
        ["encode", "x.jpg", "--upsample", "10"],
        ["identify", "x.jpg", "--upsample", "10"],
        ["identify", "x.jpg", "--upsample", "-1"],
        ["identify", "x.jpg", "-k", "0"],
        ["identify", "x.jpg", "-k", "1001"],
        ["identify", "x.jpg", "--detector", "haar"],
        ["identify", "x.jpg", "--batch-size", "1e9"],
        ["train-verifier", ".", "--epochs", "0"],
        ["calibrate", ".", "--max-impostors", "-5"],
        ["calibrate", ".", "--far", "0"],
        ["calibrate", ".", "--far", "1"],
        ["calibrate", ".", "--far", "inf"],
        ["calibrate", ".", "--plot", "roc.txt"],
        ["export-onnx", "out.txt"],
    ],
)
def test_bad_numbers_are_one_usage_error(capsys, no_encoding, argv):
    err = _usage_error(capsys, *argv)
    assert "Traceback" not in err and err.count("error:") == 1


def test_library_refuses_bad_options_once_before_reading_photos(orl_dir):
    from convlens import faces

    photos = [orl_dir / "s1" / "1.pgm"] * 3
    for bad in ({"batch_size": 0}, {"upsample": 10}, {"jitter": 10**5}, {"detector": "haar"}):
        with pytest.raises(ConvlensError):
            faces.encode_many(photos, **bad)  # raised at the call, not once per photo


def test_calibrate_checks_the_plot_before_encoding(capsys, no_encoding, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "dir.png").mkdir()
    for plot, message in [("nope/r.png", "no such folder"), ("dir.png", "is a folder")]:
        argv = ["faces", "calibrate", str(tmp_path), "--plot", str(tmp_path / plot)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    err = _usage_error(capsys, "calibrate", tmp_path, "--far", "0.1", "--verifier", __file__)
    assert "--verifier" in err


def _fake_labelled(people: int, per: int):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((people, 128)).astype(np.float32)
    x = np.repeat(centres, per, 0) + 0.3 * rng.standard_normal((people * per, 128))
    labels = np.repeat([f"p{i}" for i in range(people)], per)
    return calibrate.LabelledEmbeddings(
        x.astype(np.float32), labels, [Path(f"{i}.png") for i in range(len(x))], "fake-encoder"
    )


def test_calibrate_stores_tau_at_any_far(monkeypatch, tmp_path, capsys):
    data = _fake_labelled(12, 4)  # 1056 impostor pairs: FAR 0.05 and 0.0123 are measurable
    monkeypatch.setattr(calibrate, "encode_labelled", lambda *a, **k: data)
    db = tmp_path / "g.db"
    for far in (0.05, 0.0123):
        argv = ["faces", "calibrate", str(tmp_path), "--far", str(far), "--plot", ""]
        assert main([*argv, "--db", str(db), "--json"]) == 0
        (report,) = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
        entry = report["tar_at_far"][f"{far:g}"]
        with Gallery(db) as g:
            assert g.threshold == pytest.approx(entry["threshold"])
            assert g.threshold_info["far"] == far
            assert g.decision_threshold().value == g.threshold


def test_train_verifier_refuses_zero_epochs():
    from convlens.faces.verifier import train_verifier

    data = _fake_labelled(4, 3)
    with pytest.raises(ConvlensError, match="epochs"):
        train_verifier(data.embeddings, data.labels, epochs=0)


def test_demo_refuses_a_file_as_output_folder(tmp_path, capsys, photos_dir, monkeypatch):
    from convlens import demo

    monkeypatch.setattr("convlens.faces.gallery.Gallery.enroll", None)  # must not get there
    target = tmp_path / "existing.txt"
    target.write_text("keep me")
    assert demo.main([str(photos_dir), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and "Traceback" not in err
    assert target.read_text() == "keep me"


def test_people_into_head_stops_quietly(tmp_path):
    db = tmp_path / "many.db"
    with Gallery(db, model_id="synthetic") as g:
        names = [f"person-{i:05d}-with-a-long-name" for i in range(4000)]  # > a pipe's buffer
        g.enroll_batch(names, np.ones((len(names), 8), np.float32))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = f"{sys.executable} -m convlens faces people --db {db} | head -1"
    run = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0 and run.stderr == ""
    assert run.stdout.startswith(str(db)) and run.stdout.count("\n") == 1


def test_encode_many_takes_one_path_or_a_folder(tmp_path, orl_dir):
    from convlens import faces

    for k in (1, 2):
        (tmp_path / f"{k}.pgm").symlink_to(orl_dir / "s1" / f"{k}.pgm")
    (tmp_path / "notes.txt").write_text("not a photo")
    folder = list(faces.encode_many(str(tmp_path) + "/", progress=False))
    assert [Path(p).name for p, _ in folder] == ["1.pgm", "2.pgm"]
    assert all(len(r) == 1 for _, r in folder)
    (one,) = list(faces.encode_many(str(tmp_path / "1.pgm"), progress=False))
    assert one[0] == str(tmp_path / "1.pgm") and len(one[1]) == 1
    # Batches of 1 and 2 chips round differently in the last bits only.
    np.testing.assert_allclose(one[1][0].embedding, folder[0][1][0].embedding, atol=1e-6)


def test_export_onnx_of_a_scratch_encoder(tmp_path, capsys):
    import onnxruntime as ort
    import torch

    from convlens.models.face_models import save_face_model
    from convlens.models.small_convnet import SmallConvNet

    torch.manual_seed(0)
    net = SmallConvNet(model_id="scratch-test").eval()
    model_file = tmp_path / "scratch.pt"
    save_face_model(net, model_file, "small-convnet", {"model_id": "scratch-test"})
    out = tmp_path / "scratch.onnx"
    assert main(["faces", "export-onnx", str(out), "--model", str(model_file), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"output": str(out), "model_id": "scratch-test"}
    assert len(captured.err) < 500  # no dump of the torch graph
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, 150, 150)).astype(np.float32)
    got = ort.InferenceSession(str(out)).run(None, {"chips": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    again = ["faces", "export-onnx", str(model_file), "--model", str(model_file)]
    with pytest.raises(SystemExit):  # OUT must end in .onnx
        main(again)
    capsys.readouterr()
