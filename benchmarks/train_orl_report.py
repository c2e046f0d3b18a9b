"""benchmarks/results/train.md from the training benchmark's report (train.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def write_markdown(report: dict, path: Path) -> None:
    """The report as markdown: the header, then each section the report holds (a mining
    table needs more than one mining, the fine-tuning and speed ones their runs). Each section
    is drawn from its own entry; the mining table also reads the Siamese head's scores."""
    lines = _header(report)
    for key, wanted, render in (
        ("scratch", bool, _scratch),
        ("mining", lambda mi: len(mi) > 1, _mining),
        ("mining_seeds", lambda ms: len(ms) > 1, _mining_seeds),
        ("finetune", lambda ft: "runs" in ft, _finetune),
        ("speed", lambda sp: "runs" in sp, _speed),
    ):
        section = report.get(key)
        if section and wanted(section):
            lines += render(section, report)
    path.write_text("\n".join(lines) + "\n")


def _header(report: dict) -> list[str]:
    """The title, the machine and the aligned chips."""
    lines = ["# Training on ORL (s1-s30 train, s31-s40 held out)", ""]
    m = report.get("machine", {})
    lines.append(
        f"Machine: {m.get('cores')} CPU cores, torch {m.get('torch')} "
        f"({m.get('torch_threads')} threads), CUDA: {m.get('cuda')}. "
        "Command: `python benchmarks/train_orl.py`."
    )
    d = report.get("data")
    if d:
        lines += [
            "",
            f"Chips: {d['chips']} of 400 photos aligned ({len(d['skipped'])} skipped); "
            f"train {d['train_chips']}, held out {d['held_out_chips']}.",
        ]
    return lines


def _scratch(s: dict, report: dict) -> list[str]:
    """SmallConvNet from scratch: untrained against trained."""
    u, t = s["untrained"], s["trained"]
    lines = [
        "",
        f"## SmallConvNet from scratch, semi-hard triplets, {s['steps']} steps",
        "",
        "| | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER |",
        "|---|---|---|---|",
        f"| untrained (same init) | {pct(u['val_tar_far_1e-2'])} | "
        f"{pct(u['val_tar_far_1e-3'])} | {pct(u['val_eer'])} |",
        f"| trained | {pct(t['val_tar_far_1e-2'])} | {pct(t['val_tar_far_1e-3'])} "
        f"| {pct(t['val_eer'])} |",
        "",
        "Curves: docs/train/scratch_semi_hard.png",
    ]
    return lines


def _mining(mi: dict, report: dict) -> list[str]:
    """The minings at the same steps (and the Siamese head's own scores)."""
    lines = [
        "",
        "## Mining at the same steps (same init, same batches)",
        "",
        "| mining | active ep. 1 | active last | TAR@1e-2 | TAR@1e-3 | EER | best TAR@1e-2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in mi.items():
        f = r["final"]
        lines.append(
            f"| {k} | {pct(r['active_first_epoch'])} | {pct(r['active_last_epoch'])} | "
            f"{pct(f['val_tar_far_1e-2'])} | {pct(f['val_tar_far_1e-3'])} | "
            f"{pct(f['val_eer'])} | {pct(r['best_tar_far_1e-2'])} |"
        )
    sh = report.get("siamese_head")
    if sh:
        lines += [
            f"| siamese, scored by its head (1 - p) | | | {pct(sh['val_tar_far_1e-2'])} | "
            f"{pct(sh['val_tar_far_1e-3'])} | {pct(sh['val_eer'])} | |"
        ]
    lines += [
        "",
        "(for siamese, 'active' is the fraction of training pairs the head gets wrong)",
        "Curves: docs/train/mining.png",
    ]
    return lines


def _mining_seeds(ms: dict, report: dict) -> list[str]:
    """The minings repeated with other seeds."""
    names = list(next(iter(ms.values())))
    lines = [
        "",
        "Held-out TAR@FAR=1e-2 / EER after the same steps, per seed (init and batches differ):",
        "",
        "| mining | " + " | ".join(f"seed {s}" for s in ms) + " | mean TAR@1e-2 | mean EER |",
        "|---|" + "---|" * (len(ms) + 2),
    ]
    for m in names:
        cells = [f"{pct(ms[s][m]['val_tar_far_1e-2'])} / {pct(ms[s][m]['val_eer'])}" for s in ms]
        tar = np.mean([ms[s][m]["val_tar_far_1e-2"] for s in ms])
        eer = np.mean([ms[s][m]["val_eer"] for s in ms])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {pct(tar)} | {pct(eer)} |")
    return lines


def _finetune(ft: dict, report: dict) -> list[str]:
    """The pretrained encoder fine-tuned, against it untouched."""
    u = ft["untouched"]
    lines = [
        "",
        f"## Fine-tuning the pretrained encoder from `{ft['train_from']}` "
        f"(frozen: {', '.join(ft['frozen'])}; semi-hard triplets, AdamW, cosine)",
        "",
        "| encoder | steps | TAR@FAR=1e-2 | TAR@FAR=1e-3 | EER | model_id |",
        "|---|---|---|---|---|---|",
        f"| pretrained, untouched | 0 | {pct(u['val_tar_far_1e-2'])} | "
        f"{pct(u['val_tar_far_1e-3'])} | {pct(u['val_eer'])} | {ft['pretrained_id']} |",
    ]
    for r in ft["runs"]:
        a = r["fine_tuned"]
        lines.append(
            f"| fine-tuned, lr {r['lr']:g} | {r['steps']} | {pct(a['val_tar_far_1e-2'])} | "
            f"{pct(a['val_tar_far_1e-3'])} | {pct(a['val_eer'])} | {r['fine_tuned_id']} |"
        )
    lines += [
        "",
        "One genuine pair of the 450 is 0.22 points of TAR. Curves (first lr): "
        "docs/train/finetune.png",
    ]
    return lines


def _speed(sp: dict, report: dict) -> list[str]:
    """Training steps/s on this machine."""
    lines = [
        "",
        f"## Training speed on this CPU (batch {sp['batch']}, {sp['threads']} threads, "
        "no GPU in this session)",
        "",
        "Median step time under flock /tmp/convlens-bench.lock; the CPU is shared with "
        "processes that do not take the lock, so the 1-minute load average is given.",
        "",
        "| run | steps/s | chips/s | mean steps/s | load |",
        "|---|---|---|---|---|",
    ]
    for k, r in sp["runs"].items():
        lines.append(
            f"| {k} | {r['steps_per_s']:.2f} | {r['chips_per_s']:.0f} | "
            f"{r['mean_steps_per_s']:.2f} | {r['load_avg_1min']:.1f} |"
        )
    return lines
