"""1-D benchmarks on the shared audio: one-shot speaker verification, audio texture synthesis.

    python benchmarks/audio.py [--audio ../shared/data/audio] [--parts speakers,textures]
        [--steps 300] [--texture-steps 150] [--seconds 5]

speakers: speaker-cnn (1-D NdConvNet over log-mel, 8 kHz) trained with convlens' triplet
  trainer (P x K = 8 x 4, semi-hard mining) on 8 of the 12 speakers, evaluated one-shot on the
  4 it never saw; 3 folds so every speaker is held out once. Beside it in the same run: the
  mean-MFCC + cosine baseline and the same network untrained. Per fold: EER over all pairs of
  held-out clips, closed-set one-shot rank-1 and open-set rates (convlens.audio.oneshot) with
  tau = the EER threshold measured on the *training* speakers' pairs.
textures: see convlens.audio.texture; per exemplar: synthesis vs shuffled-frames baseline.

Writes benchmarks/results/audio.json and audio.md, pictures under docs/nd/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from convlens.audio.oneshot import one_shot  # noqa: E402
from convlens.audio.speakers import embed_waves, mfcc_baseline  # noqa: E402
from convlens.metrics import all_pairs, plot_roc, verification_report  # noqa: E402
from convlens.train.data import load_audio_folder  # noqa: E402
from convlens.train.trainer import TrainConfig, Trainer  # noqa: E402

RATE = 8000
DOCS = ROOT / "docs" / "nd"


def _eer(emb, labels) -> tuple[float, float]:
    d, same = all_pairs(emb, labels)
    r = verification_report(d, same, fars=(1e-2,))
    return r["eer"], r["eer_threshold"]


def _method_row(name, emb_train, y_train, emb_test, y_test, model_id, trials) -> dict:
    _, tau = _eer(emb_train, y_train)  # threshold from the training speakers only
    eer, _ = _eer(emb_test, y_test)
    return {"method": name, "eer": eer, **one_shot(emb_test, y_test, tau, model_id, trials)}


def speaker_fold(data, fold: int, held_out: list[str], steps: int, trials: int, out: Path):
    train_people = [p for p in data.people if p not in held_out]
    train, test = data.subset(train_people), data.subset(held_out)
    cfg = TrainConfig(
        model="speaker-cnn", init="scratch", epochs=1, steps=steps, batch_p=8, batch_k=4,
        lr=2e-3, seed=fold,
    )  # fmt: skip
    torch.manual_seed(fold)
    start = time.perf_counter()
    trainer = Trainer(cfg, train, test, out / f"speaker_fold{fold}.pt", progress=False)
    untrained = embed_waves(trainer.objective.encoder, test.chips)
    untrained_train = embed_waves(trainer.objective.encoder, train.chips)
    trainer.fit()
    seconds = time.perf_counter() - start
    model = trainer.objective.encoder
    learnt, learnt_train = embed_waves(model, test.chips), embed_waves(model, train.chips)
    mfcc, mfcc_train = mfcc_baseline(test.chips, RATE), mfcc_baseline(train.chips, RATE)
    rows = [
        _method_row("speaker-cnn (triplet)", learnt_train, train.labels, learnt, test.labels,
                    model.model_id, trials),
        _method_row("mean MFCC + cosine", mfcc_train, train.labels, mfcc, test.labels,
                    "mfcc-mean", trials),
        _method_row("speaker-cnn untrained", untrained_train, train.labels, untrained,
                    test.labels, "untrained", trials),
    ]  # fmt: skip
    curves = {
        r["method"]: all_pairs(e, test.labels)
        for r, e in zip(rows, [learnt, mfcc, untrained], strict=True)
    }
    return rows, curves, seconds, len(test)


def run_speakers(audio: Path, steps: int, trials: int) -> dict:
    torch.set_num_threads(1)
    data = load_audio_folder(audio / "voices", RATE, progress=False)
    order = np.random.default_rng(0).permutation(len(data.people))
    folds = [[data.people[i] for i in order[k::3]] for k in range(3)]
    tmp = ROOT / "out" / "audio_models"  # trained models: not committed
    tmp.mkdir(parents=True, exist_ok=True)
    report = {"clips": len(data), "speakers": len(data.people), "steps": steps, "folds": []}
    for k, held in enumerate(folds):
        rows, curves, seconds, n_test = speaker_fold(data, k, held, steps, trials, tmp)
        if k == 0:
            plot_roc({name: c for name, c in curves.items()}, DOCS / "speakers_roc_fold0.png")
        report["folds"].append(
            {"held_out": held, "test_clips": n_test, "train_seconds": seconds, "rows": rows}
        )
        for r in rows:
            print(f"fold {k} {r['method']:24s} {_rates(r)}  ({seconds:.0f} s)")
    methods = [r["method"] for r in report["folds"][0]["rows"]]
    report["mean"] = {
        m: {
            key: float(np.mean([next(r[key] for r in f["rows"] if r["method"] == m)
                                for f in report["folds"]]))
            for key in ("eer", "rank1", "open_set_known_identified", "open_set_unknown_rejected")
        }
        for m in methods
    }  # fmt: skip
    return report


def _rates(r: dict) -> str:
    return (
        f"EER {r['eer']:.3f} | rank-1 {r['rank1']:.3f} | "
        f"open-set known {r['open_set_known_identified']:.3f} | "
        f"unknown rejected {r['open_set_unknown_rejected']:.3f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", type=Path, default=ROOT.parent / "shared" / "data" / "audio")
    ap.add_argument("--parts", default="speakers,textures")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--texture-steps", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    DOCS.mkdir(parents=True, exist_ok=True)
    results = ROOT / "benchmarks" / "results"
    path = results / "audio.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report["load_average_start"] = os.getloadavg()
    report["command"] = "python " + " ".join(sys.argv)
    parts = args.parts.split(",")
    # each part keeps the command and load of the run that measured it (a later run of one
    # part leaves the other's numbers in the file)
    measured = {"command": report["command"], "load_average": os.getloadavg()}
    if "speakers" in parts:
        report["speakers"] = {**run_speakers(args.audio, args.steps, args.trials), **measured}
    if "textures" in parts:
        from texture_bench import run_textures  # benchmarks/texture_bench.py

        textures = run_textures(args.audio / "textures", args.texture_steps, args.seconds)
        report["textures"] = {**textures, **measured}
    report["load_average_end"] = os.getloadavg()
    path.write_text(json.dumps(report, indent=1, default=str))
    (results / "audio.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    load = f"{report.get('load_average_start')} -> {report.get('load_average_end')}"
    lines = ["# audio benchmarks", "", f"`{report.get('command', '')}`", "", f"load average {load}"]
    lines.append("")
    sp = report.get("speakers")
    if sp:
        lines += [f"## one-shot speakers ({sp['speakers']} speakers, {sp['clips']} clips, 3 folds "
                  f"of 4 unseen speakers, {sp['steps']} training steps per fold)", "",
                  "| method | rates (mean of 3 folds) |", "|---|---|"]  # fmt: skip
        for m, v in sp["mean"].items():
            lines.append(f"| {m} | {_rates(v)} |")
        secs = [f["train_seconds"] for f in sp["folds"]]
        lines += ["", f"training time per fold: {', '.join(f'{s:.0f} s' for s in secs)}"]
        eers = {m: [next(r["eer"] for r in f["rows"] if r["method"] == m) for f in sp["folds"]]
                for m in sp["mean"]}  # fmt: skip
        lines += ["", "EER per fold: " + "; ".join(
            f"{m} {' / '.join(f'{e:.3f}' for e in v)}" for m, v in eers.items())]  # fmt: skip
        if "command" in sp:
            lines += ["", f"measured by `{sp['command']}`, load average {sp['load_average']}"]
        lines.append("")
    tx = report.get("textures")
    if tx:
        from texture_bench import texture_markdown

        lines += texture_markdown(tx)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
