"""Benchmark of the `convlens inspect units` streaming pass: throughput and memory vs image count.

    python benchmarks/inspect_units.py                      # face encoder, ORL + photos, CPU
    python benchmarks/inspect_units.py --model efficientnet-lite0 --layer blocks.4

Each measurement runs in a fresh subprocess (peak RSS, from getrusage, only ever grows inside
one process) on the image list repeated 1x and 2x: the pass keeps a bounded top-k per unit, so
the peak should stay flat while the time doubles. A second pair of runs feeds the already
prepared network inputs (aligned chips) from memory, to split the time between preparation
(decode, face detection, alignment) and the network plus top-k bookkeeping.
Measurements hold /tmp/convlens-bench.lock so concurrent benchmarks do not skew each other.
Results: benchmarks/results/inspect.json and inspect.md.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVLENS_SHARED", ROOT.parent / "shared")) / "data"
DEFAULT_IMAGES = [SHARED / "faces" / "orl", SHARED / "faces" / "photos"]
DEFAULT_LAYERS = {"face": ["stage1", "stage3", "stage5"], "efficientnet-lite0": ["blocks.4"]}
LOCK = "/tmp/convlens-bench.lock"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(args) -> dict:
    """One measurement in this process: returns timings and peak RSS as a dict."""
    import numpy as np
    import torch

    from convlens.images import list_images
    from convlens.inspection import InputSpec, resolve_model, scan
    from convlens.inspection.inputs import iter_views

    torch.set_num_threads(args.threads)
    model, spec, _ = resolve_model(args.model)
    sources = [p for d in args.images for p in list_images(d)]
    if args.mode == "prepared":
        # Prepare once (not timed), then stream the network inputs from memory.
        views = [v for _, vs in iter_views(sources, spec, []) for v in vs]
        sources = [np.ascontiguousarray(v) for v in views]
        spec = InputSpec(spec.size, spec.to_tensor, lambda im: [im])
    layers = dict.fromkeys(args.layer, args.units)
    # Warm-up on one batch (the same for every multiple): first-call allocations and thread
    # pools are not the pass.
    scan(model, sources[: args.batch_size], layers, spec, batch_size=args.batch_size,
         device="cpu")  # fmt: skip
    sources = sources * args.mult
    rss_before = _rss_mib()
    times, counts = [], set()
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = scan(model, sources, layers, spec, top=9, batch_size=args.batch_size,
                   device="cpu")  # fmt: skip
        times.append(time.perf_counter() - t0)
        counts.add((res.images, res.items, len(res.skipped)))
        del res  # this pass's result (its kept inputs) is not part of the next pass
    ((images, items, skipped),) = counts
    seconds = min(times)
    return {
        "mode": args.mode,
        "mult": args.mult,
        "images": images,
        "inputs": items,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "seconds_all": [round(t, 3) for t in times],
        "images_per_s": round(images / seconds, 2),
        "inputs_per_s": round(items / seconds, 2),
        "peak_rss_mib_before_pass": round(rss_before, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="face")
    ap.add_argument("--layer", action="append", help="layers (default: per model)")
    ap.add_argument("--units", default="0:16", help="units per layer (default 0:16, as the CLI)")
    ap.add_argument("--images", action="append", type=Path, help="folders (default ORL + photos)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--prepared-repeat",
        dest="repeat_prepared",
        type=int,
        default=3,
        help="timed passes of the in-memory runs; the fastest is reported (default 3)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inspect")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--mult", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.layer = args.layer or DEFAULT_LAYERS.get(args.model)
    args.images = args.images or DEFAULT_IMAGES
    if not args.layer:
        ap.error("--layer is required for this model")
    if args.child:
        print(json.dumps(child(args)))
        return 0

    import torch

    runs = []
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load_before = [round(v, 1) for v in os.getloadavg()]
        for mode in ("full", "prepared"):
            for mult in (1, 2):
                cmd = [sys.executable, __file__, "--child", "--mode", mode, "--mult", str(mult)]
                cmd += ["--repeat", str(1 if mode == "full" else args.repeat_prepared)]
                cmd += ["--model", args.model, "--units", args.units]
                cmd += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
                cmd += [a for layer in args.layer for a in ("--layer", layer)]
                cmd += [a for d in args.images for a in ("--images", str(d))]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
                print(runs[-1], flush=True)
    report = {
        "command": "python benchmarks/inspect_units.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "layers": args.layer,
        "units": args.units,
        "images": [
            str(Path(d).relative_to(SHARED.parent)) if d.is_relative_to(SHARED.parent) else str(d)
            for d in args.images
        ],  # fmt: skip
        "batch_size": args.batch_size,
        "device": "cpu (no GPU in this session)",
        "cpu": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "load_average_before": load_before,
        "load_average_after": [round(v, 1) for v in os.getloadavg()],
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(r: dict) -> str:
    lines = [
        "# inspect units: streaming pass throughput and memory",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Model `{r['model']}`, layers {', '.join(f'`{x}`' for x in r['layers'])} "
        f"(units: {r['units']}, top 9), images {' + '.join(r['images'])}, "
        f"batch {r['batch_size']}, {r['device']}; {r['cpu']}, torch {r['torch']} with "
        f"{r['torch_threads']} threads. Load average (1/5/15 min) {r['load_average_before']} "
        f"before, {r['load_average_after']} after: other work shared the machine. In-memory "
        "runs: fastest of several passes (all in the JSON).",
        "",
        "| inputs from | image list | images | network inputs | seconds | images/s | inputs/s "
        "| peak RSS before pass (MiB) | peak RSS after (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["runs"]:
        src = "image files (decode + prepare)" if x["mode"] == "full" else "prepared, in memory"
        lines.append(
            f"| {src} | x{x['mult']} | {x['images']} | {x['inputs']} | {x['seconds']} "
            f"| {x['images_per_s']} | {x['inputs_per_s']} | {x['peak_rss_mib_before_pass']} "
            f"| {x['peak_rss_mib']} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
