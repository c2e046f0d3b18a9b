"""3-D benchmarks: solid texture time and peak memory (64^3, optionally 128^3) from a 2-D
exemplar, and the inflated VGG19's unit scan of the real head CT.

    python benchmarks/volumes.py [--runs brick:64:200,gravel:32:150] [--time-only 128:4]

Each run is EXEMPLAR:SIZE:STEPS (exemplars: scikit-image's `brick`, `gravel`, `grass`, CC0, a
dev dependency); --time-only sizes are run for a few steps only, for time and memory. Writes
benchmarks/results/volumes.json and volumes.md; cubes, slice PNGs and GIFs under docs/nd/.
Peak memory is the process's max RSS growth (resource.getrusage), CPU only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from convlens.volumes.solid import SliceFeatures, save_solid, solid_texture  # noqa: E402

DOCS = ROOT / "docs" / "nd"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def solid_row(name: str, size: int, steps: int, features, pictures: bool = True) -> dict:
    from skimage import data

    before, load = _rss_mb(), os.getloadavg()
    result = solid_texture(getattr(data, name)(), size=size, steps=steps, features=features)
    row = {
        "exemplar": name, "size": size, "steps": steps, "seconds": result.seconds,
        "load_average": load,
        "seconds_per_step": result.seconds / steps, "peak_rss_growth_mb": _rss_mb() - before,
        "loss_first10": float(np.mean(result.losses[:10])),
        "loss_last10": float(np.mean(result.losses[-10:])),
    }  # fmt: skip
    print(row)
    if not pictures:
        return row
    # The cube itself goes to out/ (not committed); its pictures to docs/nd/.
    (ROOT / "out").mkdir(exist_ok=True)
    for path in save_solid(result, ROOT / "out" / f"solid_{name}_{size}.npz"):
        if path.suffix != ".npz":
            shutil.copy(path, DOCS / path.name)
    return row


def ct_units_row() -> dict:
    import torch.nn.functional as F

    from convlens.models import registry
    from convlens.models.vgg19_3d import ct_window
    from convlens.volumes import read_volume
    from convlens.volumes.units import render_units, volume_units

    path = ROOT.parent / "shared" / "data" / "volumes" / "head_ct.npz"
    start = time.perf_counter()
    vol = torch.from_numpy(ct_window(read_volume(path).data))[None, None]
    vol = F.interpolate(vol, size=(36, 64, 64), mode="trilinear", align_corners=False)[0, 0]
    model = registry.get("vgg19-3d").load()
    rows = {}
    for layer in ("features.relu2_1", "features.relu3_1"):
        t = time.perf_counter()
        r = volume_units(model, vol.numpy(), layer, units=range(8))
        render_units(r, DOCS / f"ct_units_{layer.split('.')[-1]}.png")
        rows[layer] = {"seconds": time.perf_counter() - t, "field": r.field}
    return {"volume": "head_ct 108x256x256 -> 36x64x64", "layers": rows,
            "total_seconds": time.perf_counter() - start}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="brick:64:200,gravel:32:150")
    ap.add_argument("--time-only", default="128:4")
    ap.add_argument("--skip-ct", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    DOCS.mkdir(parents=True, exist_ok=True)
    report = {"command": "python " + " ".join(sys.argv), "load_average_start": os.getloadavg(),
              "threads": torch.get_num_threads(), "solid": [], "ct_units": None}  # fmt: skip
    features = SliceFeatures()
    for run in filter(None, args.runs.split(",")):
        name, size, steps = run.split(":")
        report["solid"].append(solid_row(name, int(size), int(steps), features))
    for run in filter(None, args.time_only.split(",")):
        size, steps = run.split(":")
        report["solid"].append(solid_row("brick", int(size), int(steps), features, False))
    report["ct_units"] = None if args.skip_ct else ct_units_row()
    report["load_average_end"] = os.getloadavg()
    out = ROOT / "benchmarks" / "results"
    (out / "volumes.json").write_text(json.dumps(report, indent=1, default=str))
    lines = ["# volume benchmarks", "", f"`{report['command']}`", "",
             f"load average {report['load_average_start']} -> {report['load_average_end']}, "
             f"{report['threads']} torch threads", "",
             "| exemplar | size | steps | s/step | total s | peak RSS growth MB "
             "| loss first10 -> last10 | load average |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["solid"]:
        lines.append(f"| {r['exemplar']} | {r['size']}^3 | {r['steps']} | "
                     f"{r['seconds_per_step']:.2f} | {r['seconds']:.0f} | "
                     f"{r['peak_rss_growth_mb']:.0f} | {r['loss_first10']:.3f} -> "
                     f"{r['loss_last10']:.3f} | {r['load_average'][0]:.1f} |")  # fmt: skip
    ct = report["ct_units"]
    if ct is not None:
        lines += ["", f"CT unit scan ({ct['volume']}): " + ", ".join(
            f"{k} {v['seconds']:.1f} s" for k, v in ct["layers"].items())]  # fmt: skip
    (out / "volumes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
