"""`convlens train`: bad options are usage errors before any work (nothing written, no
traceback); --json prints one line per epoch and a final one; TrainConfig.check names
values, never flags; progress reaches a callback as events, in order."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_train import _photo_folder, synthetic, tiny

from convlens import cli
from convlens.errors import ConvlensError
from convlens.train.config import TrainConfig
from convlens.train.events import EpochEvent, StepEvent
from convlens.train.trainer import Trainer

# Tiny nets run fastest on one thread, and far faster when the CPU is shared.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fake_chips(monkeypatch):
    """Photos become chips without the face detector (its speed is not under test here)."""
    from convlens.train import data

    def fake_pipeline(detector, upsample):
        from convlens.images import load_image

        return lambda path: (1, np.resize(load_image(path), (150, 150, 3)), "")

    monkeypatch.setattr(data, "pipeline_chipper", fake_pipeline)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*"))


def _scratch_args(root, out, cache):
    args = ["train", "triplet", str(root), "-o", str(out), "--init", "scratch"]
    args += ["--embedding-dim", "8", "--epochs", "2", "--steps", "2", "--batch-p", "2"]
    return args + ["--batch-k", "2", "--val-people", "1", "--cache-dir", str(cache)]


BAD_OPTIONS = [
    ["--lr", "nan"],
    ["--lr", "-1"],
    ["--lr", "0"],
    ["--lr", "inf"],
    ["--epochs", "0"],
    ["--steps", "-2"],
    ["--batch-p", "1"],
    ["--batch-k", "1"],
    ["--embedding-dim", "1"],
    ["--weight-decay", "-0.1"],
    ["--grad-clip", "-1"],
    ["--val-split", "1"],
    ["--val-split", "0"],
    ["--upsample", "4"],
    ["--seed", "-1"],
    ["--seed", "1.5"],
    ["--epochs", "ten"],
    ["--margin", "0"],
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda a: " ".join(a))
def test_bad_numbers_are_usage_errors_before_any_work(tmp_path, capsys, bad):
    root = _photo_folder(tmp_path)
    before = _files(tmp_path)
    args = _scratch_args(root, tmp_path / "m.pt", tmp_path / "cache") + bad
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert bad[0] in err and "Traceback" not in err
    assert _files(tmp_path) == before  # no chip cache, no model, no logs


@pytest.mark.parametrize(
    "where",
    ["missing folder", "same as resume", "same as checkpoint", "not .pt", "a folder"],
)
def test_bad_outputs_are_refused_before_any_work(tmp_path, capsys, fake_chips, where):
    root = _photo_folder(tmp_path)
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(b"a checkpoint to resume")
    (tmp_path / "dir.pt").mkdir()
    out, extra = {
        "missing folder": (tmp_path / "nowhere" / "m.pt", []),
        "same as resume": (ckpt, ["--resume", str(ckpt)]),
        "same as checkpoint": (tmp_path / "m.pt", ["--checkpoint", str(tmp_path / "m.pt")]),
        "not .pt": (tmp_path / "m.txt", []),
        "a folder": (tmp_path / "dir.pt", []),
    }[where]
    before = _files(tmp_path)
    args = _scratch_args(root, out, tmp_path / "cache") + extra
    try:
        code = cli.main(args)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert _files(tmp_path) == before
    assert ckpt.read_bytes() == b"a checkpoint to resume"


def test_json_prints_each_epoch_and_a_final_line(tmp_path, capsys, fake_chips):
    root = _photo_folder(tmp_path)
    (root / "p0" / "broken.jpg").unlink()
    out = tmp_path / "enc.pt"
    args = _scratch_args(root, out, tmp_path / "cache") + ["--model", "small-convnet", "--json"]
    assert cli.main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["epoch", "epoch", "epoch", "done"]
    assert [line["epoch"] for line in lines[:3]] == [0, 1, 2]
    assert "train_loss" not in lines[0] and lines[2]["step"] == 4
    assert {"train_loss", "active_fraction", "lr", "seconds"} <= set(lines[2])
    assert lines[3]["model"] == str(out) and lines[3]["model_id"].startswith("small_convnet-")
    assert lines[3]["verifier"] is None and out.exists()


def test_unknown_or_unfit_model_is_an_error_before_any_work(tmp_path, capsys):
    root = _photo_folder(tmp_path)
    before = _files(tmp_path)
    base = _scratch_args(root, tmp_path / "m.pt", tmp_path / "cache")
    assert cli.main([*base, "--model", "vgg19"]) == 2  # not a face encoder
    assert "vgg19" in capsys.readouterr().err
    pretrained = [a if a != "scratch" else "pretrained" for a in base]
    assert cli.main([*pretrained, "--model", "small-convnet"]) == 2  # nothing pretrained
    assert "no pretrained weights" in capsys.readouterr().err
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    "change, value",
    [
        ({"lr": float("nan")}, "nan"),
        ({"lr": -1.0}, "-1"),
        ({"epochs": 0}, "0"),
        ({"steps": 0}, "0"),
        ({"batch_p": 1}, "1"),
        ({"batch_k": 1}, "1"),
        ({"margin": -0.5}, "-0.5"),
        ({"weight_decay": float("inf")}, "inf"),
        ({"grad_clip": -1.0}, "-1"),
        ({"seed": -1}, "-1"),
        ({"embedding_dim": 8, "init": "pretrained"}, "8"),
        ({"init": "warm"}, "warm"),
        ({"mining": "easy"}, "easy"),
        ({"model": "vgg19"}, "vgg19"),
        ({"small_input": 40}, "40"),
    ],
)
def test_config_check_names_the_value_never_a_flag(change, value):
    cfg = replace(tiny(), **change)
    with pytest.raises(ConvlensError) as err:
        cfg.check()
    message = str(err.value)
    assert value in message and "--" not in message, message


def test_default_config_passes_its_check():
    TrainConfig().check()
    tiny().check()


def test_callback_receives_events_in_order_with_falling_loss(tmp_path):
    events = []
    cfg = tiny(epochs=2, steps=10, lr=3e-3, batch_p=4, mining="hard", margin=0.5)
    val = synthetic(3, 3, seed=1, prefix="v")
    t = Trainer(cfg, synthetic(), val, tmp_path / "m.pt", progress=False, callback=events.append)
    t.fit()
    kinds = [(type(e).__name__, e.epoch) for e in events]
    expected = [("EpochEvent", 0)]
    for epoch in (1, 2):
        expected += [("StepEvent", epoch)] * 10 + [("EpochEvent", epoch)]
    assert kinds == expected
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, 21))
    assert all(e.epochs == 2 and e.steps_per_epoch == 10 and e.lr > 0 for e in steps)
    assert all(0.0 <= e.active_fraction <= 1.0 for e in steps)
    loss = [e.loss for e in steps]
    assert np.mean(loss[-6:]) < 0.7 * np.mean(loss[:6]), loss
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert epochs[0].train_loss is None and "val_eer" in epochs[0].validation
    assert epochs[2].train_loss == pytest.approx(np.mean(loss[10:]))
    assert "val_eer" in epochs[2].validation
    # The callback saw exactly what the logs and the checkpoint hold.
    assert [e.row() for e in epochs] == t.history
    assert [(e.step, e.loss, e.active_fraction, e.lr) for e in steps] == t.step_log


def test_progress_bar_stops_when_training_fails(tmp_path):
    """A callback that raises ends the run; the bar is closed, the error reaches the caller."""

    def fail_at_step_3(event):
        if isinstance(event, StepEvent) and event.step == 3:
            raise ConvlensError("stopped by the callback")

    t = Trainer(tiny(steps=5), synthetic(), None, tmp_path / "m.pt", callback=fail_at_step_3)
    with pytest.raises(ConvlensError, match="stopped"):
        t.fit()
    assert t.progress._bar is None
    assert not (tmp_path / "m.pt").exists()
