"""Audio texture part of benchmarks/audio.py: per exemplar, the synthesis (random-weight
1-D ConvNet Grams + Griffin-Lim) against the shuffled-frames baseline, measured by texture
statistics (convlens.audio.stats) against the exemplar, with spectrogram pictures and the
style loss per L-BFGS evaluation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from convlens.audio.io import read_audio, write_audio
from convlens.audio.stats import save_spectrograms, stats_distance, texture_stats
from convlens.audio.texture import RATE, shuffled_frames, synthesize

DOCS = Path(__file__).resolve().parents[1] / "docs" / "nd"
EXEMPLARS = ("rain", "birds", "fire_campfire")
CHANNELS = 512


def _loss_plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, losses in curves.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=name)
    ax.set(yscale="log", xlabel="L-BFGS evaluation", ylabel="style loss (x1e3)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def one_texture(folder: Path, name: str, steps: int, seconds: float) -> tuple[dict, list]:
    exemplar = read_audio(folder / f"{name}.wav", RATE).samples
    start = time.perf_counter()
    result = synthesize(exemplar, seconds=seconds, steps=steps, channels=CHANNELS)
    elapsed = time.perf_counter() - start
    baseline = shuffled_frames(exemplar, seconds)
    # A second stretch of the exemplar itself: how far two pieces of the same sound are.
    half = len(exemplar) // 2
    ref = texture_stats(exemplar[:half], RATE)
    rows = {
        "synthesis": stats_distance(ref, texture_stats(result.samples, RATE)),
        "shuffled frames": stats_distance(ref, texture_stats(baseline, RATE)),
        "exemplar 2nd half": stats_distance(ref, texture_stats(exemplar[half:], RATE)),
        "white noise": stats_distance(
            ref, texture_stats(np.random.default_rng(0).standard_normal(len(baseline)), RATE)
        ),
    }
    # Listenable output stays out of git (derived from the shared clips' licences).
    (DOCS.parents[1] / "out").mkdir(exist_ok=True)
    write_audio(DOCS.parents[1] / "out" / f"texture_{name}.wav", result.samples, RATE)
    save_spectrograms(
        {"exemplar": exemplar[: int(seconds * RATE)], "synthesis": result.samples,
         "shuffled frames": baseline},
        RATE, DOCS / f"texture_{name}.png", title=f"{name}: {seconds:g} s",
    )  # fmt: skip
    report = {
        "exemplar": name,
        "seconds": seconds,
        "steps": len(result.losses),
        "loss_first": result.losses[0],
        "loss_last": result.losses[-1],
        "synthesis_seconds": elapsed,
        "distances_to_exemplar_1st_half": rows,
    }
    print(f"{name}: loss {result.losses[0]:.3g} -> {result.losses[-1]:.3g} in {elapsed:.0f} s; "
          + "; ".join(f"{k} {v}" for k, v in rows.items()))  # fmt: skip
    return report, result.losses


def run_textures(folder: Path, steps: int, seconds: float) -> dict:
    torch.set_num_threads(1)
    DOCS.mkdir(parents=True, exist_ok=True)
    out, curves = [], {}
    for name in EXEMPLARS:
        report, losses = one_texture(folder, name, steps, seconds)
        out.append(report)
        curves[name] = losses
    _loss_plot(curves, DOCS / "texture_losses.png")
    return {"channels": CHANNELS, "kernel": 11, "n_fft": 512, "hop": 128, "items": out}


def texture_markdown(tx: dict) -> list[str]:
    lines = [
        f"## audio textures ({tx['channels']} random filters x 11 frames, L-BFGS, Griffin-Lim)",
        "",
        "Texture statistics vs the exemplar's first half (mean |difference|; lower is closer): "
        "mean envelope per band (dB), envelope coefficient of variation, modulation-power shares.",
        "",
        "| exemplar | loss first -> last | time | compared | mean dB | CV | modulation |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in tx["items"]:
        for k, v in item["distances_to_exemplar_1st_half"].items():
            lines.append(
                f"| {item['exemplar']} | {item['loss_first']:.3g} -> {item['loss_last']:.3g} | "
                f"{item['synthesis_seconds']:.0f} s | {k} | {v['mean_db']:.2f} | {v['cv']:.3f} | "
                f"{v['modulation']:.3f} |"
            )
    return lines + [""]
