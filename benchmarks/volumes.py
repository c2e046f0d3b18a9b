"""3-D benchmarks: solid texture time and peak memory (64^3, 128^3) from a 2-D exemplar,
volumetric style transfer onto the head CT, and the inflated VGG19's unit scan of the CT.

    python benchmarks/volumes.py [--runs brick:64:200,gravel:32:150] [--time-only 128:10]
    python benchmarks/volumes.py --runs "" --time-only "" --skip-ct --name volumes_transfer \
        --transfer great_wave.jpg,mni152_t1.npz

Each run is EXEMPLAR:SIZE:STEPS (exemplars: scikit-image's `brick`, `gravel`, `grass`, CC0, a
dev dependency); --time-only sizes are run for a few steps only, for time and memory. Writes
benchmarks/results/NAME.json and NAME.md (NAME: --name, default volumes); cubes go to out/,
slice PNGs and GIFs to docs/nd/.
Peak memory is the process's max RSS (resource.getrusage; it includes VGG19 and Python, see
rss_before_vgg_mb) and its growth during the run, CPU only.
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

    before, load, ticks = _rss_mb(), os.getloadavg(), [time.perf_counter()]
    result = solid_texture(
        getattr(data, name)(),
        size=size,
        steps=steps,
        features=features,
        callback=lambda step, loss: ticks.append(time.perf_counter()),
    )
    row = {
        "exemplar": name, "size": size, "steps": steps, "seconds": result.seconds,
        "load_average": load, "peak_rss_mb": _rss_mb(),
        # the median step: the shared CPU's other jobs make the mean swing
        "seconds_per_step": float(np.median(np.diff(ticks))),
        "peak_rss_growth_mb": _rss_mb() - before,
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


def solid_overview(rows: list[dict], path: Path = DOCS / "solid_overview.png") -> None:
    """One row per solid run: the exemplar as the optimisation saw it (shorter side 2 x the
    cube's) | the cube's three middle slices, all 256 pixels high."""
    from PIL import Image
    from skimage import data

    tiles = []
    for r in rows:
        name, size = r["exemplar"], r["size"]
        ex = Image.fromarray(getattr(data, name)()).resize((2 * size, 2 * size), Image.LANCZOS)
        sl = Image.open(DOCS / f"solid_{name}_{size}_slices.png")
        sl = sl.resize((sl.width * 256 // sl.height, 256), Image.NEAREST)
        row = Image.new("RGB", (266 + sl.width, 256), "white")
        row.paste(ex.resize((256, 256), Image.NEAREST), (0, 0))
        row.paste(sl, (266, 0))
        tiles.append(row)
    sheet = Image.new("RGB", (max(t.width for t in tiles), 266 * len(tiles)), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, (0, 266 * i))
    sheet.save(path)


def transfer_row(style: str, steps: int, shape=(24, 48, 48)) -> dict:
    """Volumetric style transfer (vgg19-3d) onto the head CT: style a 2-D painting or a
    volume from ../shared/data; pictures to docs/nd/transfer_<style>_slices.png / .gif."""
    from convlens.volumes import prepare_volume
    from convlens.volumes.transfer import save_transfer, style_volume

    shared = ROOT.parent / "shared" / "data"
    style_path = shared / ("volumes" if style.endswith(".npz") else "styles") / style
    content = prepare_volume(shared / "volumes" / "head_ct.npz", shape)
    load, ticks = os.getloadavg(), [time.perf_counter()]
    result = style_volume(
        content,
        style_path,
        steps=steps,
        style_weight=10.0,
        callback=lambda step, loss: ticks.append(time.perf_counter()),
    )
    name = Path(style).name.split(".")[0]
    (ROOT / "out").mkdir(exist_ok=True)
    for path in save_transfer(result, ROOT / "out" / f"transfer_{name}.npz"):
        if path.suffix != ".npz":
            shutil.copy(path, DOCS / path.name)
    row = {"content": f"head_ct -> {'x'.join(map(str, shape))}", "style": style,
           "steps": steps, "seconds": result.seconds, "load_average": load,
           "seconds_per_step": float(np.median(np.diff(ticks))), "peak_rss_mb": _rss_mb(),
           "loss_first": result.losses[0], "loss_last": result.losses[-1]}  # fmt: skip
    print(row)
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
    ap.add_argument("--transfer", default="", help="styles, e.g. great_wave.jpg,mni152_t1.npz")
    ap.add_argument("--transfer-steps", type=int, default=40)
    ap.add_argument("--name", default="volumes", help="results file stem (volumes)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    DOCS.mkdir(parents=True, exist_ok=True)
    report = {"command": "python " + " ".join(sys.argv), "load_average_start": os.getloadavg(),
              "rss_before_vgg_mb": _rss_mb(),
              "threads": torch.get_num_threads(), "solid": [], "ct_units": None}  # fmt: skip
    features = SliceFeatures()
    for run in filter(None, args.runs.split(",")):
        name, size, steps = run.split(":")
        report["solid"].append(solid_row(name, int(size), int(steps), features))
    if report["solid"]:
        solid_overview(report["solid"])
    for run in filter(None, args.time_only.split(",")):
        size, steps = run.split(":")
        report["solid"].append(solid_row("brick", int(size), int(steps), features, False))
    report["ct_units"] = None if args.skip_ct else ct_units_row()
    report["transfer"] = [transfer_row(style, args.transfer_steps)
                          for style in filter(None, args.transfer.split(","))]  # fmt: skip
    report["load_average_end"] = os.getloadavg()
    out = ROOT / "benchmarks" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=str))
    lines = ["# volume benchmarks", "", f"`{report['command']}`", "",
             f"load average {report['load_average_start']} -> {report['load_average_end']}, "
             f"{report['threads']} torch threads", "",
             "| exemplar | size | steps | median s/step | total s | peak RSS MB (growth) "
             "| loss first10 -> last10 | load average |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["solid"]:
        lines.append(f"| {r['exemplar']} | {r['size']}^3 | {r['steps']} | "
                     f"{r['seconds_per_step']:.2f} | {r['seconds']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} ({r['peak_rss_growth_mb']:+.0f}) | "
                     f"{r['loss_first10']:.3f} -> "
                     f"{r['loss_last10']:.3f} | {r['load_average'][0]:.1f} |")  # fmt: skip
    if report["transfer"]:
        lines += [
            "",
            "| volume style transfer | style | steps | median s/step | total s "
            "| peak RSS MB | cost first -> last | load average |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["transfer"]:
            lines.append(
                f"| {r['content']} | {r['style']} | {r['steps']} | "
                f"{r['seconds_per_step']:.2f} | {r['seconds']:.0f} | {r['peak_rss_mb']:.0f} "
                f"| {r['loss_first']:.2f} -> {r['loss_last']:.2f} | {r['load_average'][0]:.1f} |"
            )
    ct = report["ct_units"]
    if ct is not None:
        lines += ["", f"CT unit scan ({ct['volume']}): " + ", ".join(
            f"{k} {v['seconds']:.1f} s" for k, v in ct["layers"].items())]  # fmt: skip
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
