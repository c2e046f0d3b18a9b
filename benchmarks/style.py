"""Style-transfer evidence: speed against a naive loop, quality grids, the docs gallery.

    python benchmarks/style.py speed      # seconds for 300 iterations at 256 / 512 px
    python benchmarks/style.py grid       # settings comparison -> docs/style/compare_*.jpg
    python benchmarks/style.py gallery    # 3 photos x 3 paintings -> docs/style/gallery_*.jpg
    python benchmarks/style.py large      # 1024 px coarse-to-fine run: time and peak memory
    python benchmarks/style.py all

Everything runs under flock /tmp/convlens-bench.lock (the CPU is shared with other
benchmarks). Results merge into benchmarks/results/style.json; style.md is rewritten from it.

The naive reference (`naive_loop`) is the textbook loop: eager PyTorch, unmodified network
(BatchNorm separate, NCHW), the whole feature network run every step (stem .. head), raw block
outputs tapped with forward hooks, fp32, Adam; targets are computed once with no_grad and the
weights are frozen (every tutorial does both).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import platform
import resource
import sys
import time
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path

import numpy as np
import torch
from bench_report import md_table
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "style"
SHARED = ROOT.parent / "shared" / "data"
STYLES = SHARED / "styles"
LOCK = "/tmp/convlens-bench.lock"
# The library's device default is "auto" (CUDA when present); these numbers, the naive
# reference and the docs images are CPU ones.
DEVICE = "cpu"


_HELD = False


@contextmanager
def bench_lock():
    """flock LOCK; re-entrant within this process (a second flock on a new fd would block)."""
    global _HELD
    if _HELD:
        yield
        return
    with open(LOCK, "w") as f:
        t = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        waited = time.perf_counter() - t
        if waited > 1:
            print(f"(waited {waited:.0f} s for {LOCK})", flush=True)
        _HELD = True
        try:
            yield
        finally:
            _HELD = False
            fcntl.flock(f, fcntl.LOCK_UN)


def load_results() -> dict:
    path = RESULTS / "style.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(update: dict) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = load_results()
    data.update(update)
    data["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads() if False else __import__("os").cpu_count(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    (RESULTS / "style.json").write_text(json.dumps(data, indent=2))
    write_markdown(data)
    return data


def contents() -> dict[str, np.ndarray]:
    import skimage.data as D

    from convlens.images import load_image

    out = {"astronaut": D.astronaut(), "chelsea": D.chelsea()}
    obama = SHARED / "faces" / "photos" / "obama.jpg"
    out["obama" if obama.exists() else "coffee"] = (
        load_image(obama) if obama.exists() else D.coffee()
    )
    return out


def style_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(STYLES.glob("*.jpg"))}


# ------------------------------------------------------------------ speed


def naive_loop(content: np.ndarray, style: np.ndarray, size: int, steps: int) -> float:
    """The reference: eager, unmodified Lite0, whole feature network, raw features, fp32."""
    from convlens.models.efficientnet_lite import load_efficientnet_lite0
    from convlens.style.losses import normalized_gram, style_cost_from_grams

    model = load_efficientnet_lite0()
    model.requires_grad_(False)
    content_layers = ["blocks.4"]
    style_layers = ["blocks.0", "blocks.2", "blocks.4", "blocks.10"]
    modules = dict(model.named_modules())
    feats: dict[str, torch.Tensor] = {}
    for name in content_layers + style_layers:
        modules[name].register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, o))

    def to_t(img, hw):
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
        return torch.nn.functional.interpolate(x, size=hw, mode="bilinear", antialias=True)

    h, w = content.shape[:2]
    k = size / max(h, w)
    c = to_t(content, (round(h * k), round(w * k))).clamp(0, 1)
    s = to_t(style, (round(style.shape[0] * k), round(style.shape[1] * k))).clamp(0, 1)
    with torch.no_grad():
        model.features(c)
        ct = {n: feats[n].clone() for n in content_layers}
        model.features(s)
        gt = {n: normalized_gram(feats[n]) for n in style_layers}
    x = c.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        model.features(x)
        jc = sum(0.5 * (feats[n] - ct[n]).pow(2).sum() / ct[n].numel() for n in content_layers)
        js = sum(style_cost_from_grams(gt[n], normalized_gram(feats[n])) for n in style_layers)
        loss = jc + 10.0 * js / len(style_layers)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return time.perf_counter() - t0


def transfer(content, style, size: int, steps: int, **kw):
    """convlens' run_transfer as every run here makes it: on DEVICE, no progress bar."""
    from convlens.style import run_transfer

    return run_transfer(content, style, size=size, steps=steps, progress=False, device=DEVICE, **kw)


def ours(content, style, size, steps, **kw) -> float:
    return transfer(content, style, size, steps, **kw).seconds


def speed(args) -> None:
    import skimage.data as D

    from convlens.images import load_image

    content = D.chelsea()
    style = load_image(style_paths()["starry_night"])
    rows = []
    configs = [
        ("naive (eager, full net, BN, NCHW, raw)", None),
        (
            "ours raw features, no BN fold, NCHW",
            dict(features="raw", fold_bn=False, channels_last=False, pad=0),
        ),
        ("ours raw features, BN folded, NCHW", dict(features="raw", channels_last=False, pad=0)),
        ("ours raw features (BN folded, channels_last)", dict(features="raw", pad=0)),
        ("ours default (avgpool features, reflect pad 16)", dict()),
    ]
    if args.compile:
        configs.append(("ours raw features + torch.compile", dict(features="raw", compile=True)))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            # one lock for the whole size block: naive and ours side by side, alternating
            # rounds; the best of the rounds is reported (the CPU is shared)
            chosen = configs if size <= 256 else [configs[0], configs[3], configs[4]]
            rounds = args.rounds
            best: dict[str, float] = {}
            with bench_lock():
                for _ in range(rounds):
                    for label, kw in chosen:
                        if kw is None:
                            secs = naive_loop(content, style, size, args.steps)
                        else:
                            secs = ours(content, style, size, args.steps, threads=threads, **kw)
                        best[label] = min(secs, best.get(label, float("inf")))
                        print(label, size, round(secs, 2), flush=True)
            base = best[configs[0][0]]
            for label, _ in chosen:
                secs = best[label]
                row = {
                    "config": label,
                    "size": size,
                    "threads": threads,
                    "steps": args.steps,
                    "rounds": rounds,
                    "seconds": round(secs, 2),
                    "s_per_iter": round(secs / args.steps, 4),
                    "speedup_vs_naive": round(base / secs, 2),
                }
                print(row, flush=True)
                rows.append(row)
    # merge with earlier rows of other sizes/configs (a run may measure one size only)
    keep = {(r["config"], r["size"], r["threads"]) for r in rows}
    earlier = [r for r in load_results().get("speed", [])
               if (r["config"], r["size"], r["threads"]) not in keep]  # fmt: skip
    save_results({"speed": sorted(earlier + rows, key=lambda r: (r["threads"], r["size"]))})


# ------------------------------------------------------------------ quality


def label(img: Image.Image, text: str) -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out)
    d.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
    d.text((3, 1), text, fill=(255, 255, 255))
    return out


def grid(images: list[list[Image.Image]], pad: int = 4) -> Image.Image:
    """Rows of tiles; each row as tall as its tallest tile, columns as wide as the widest."""
    w = max(i.width for row in images for i in row)
    heights = [max(i.height for i in row) for row in images]
    cols = max(len(r) for r in images)
    canvas = Image.new("RGB", (cols * (w + pad) + pad, sum(heights) + pad * (len(images) + 1)),
                       "white")  # fmt: skip
    y = pad
    for row, h in zip(images, heights, strict=True):
        for c, img in enumerate(row):
            canvas.paste(img, (pad + c * (w + pad), y))
        y += h + pad
    return canvas


def save_jpeg(img: Image.Image, path: Path, max_kb: int = 300) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for q in (88, 82, 75, 68, 60):
        img.save(path, quality=q, optimize=True)
        if path.stat().st_size <= max_kb * 1024:
            return


def speckle(img: Image.Image) -> float:
    """Fine colour speckle: mean |pixel - 3x3 box mean| of the chroma channels (0..255 scale).
    High-frequency colour energy; a photo's flat areas score near 0."""
    arr = np.asarray(img.convert("YCbCr"), np.float64)[..., 1:]
    pad = np.pad(arr, ((1, 1), (1, 1), (0, 0)), mode="edge")
    box = sum(pad[i : i + arr.shape[0], j : j + arr.shape[1]] for i in range(3) for j in range(3))
    return float(np.abs(arr - box / 9).mean())


COMPARISONS = {
    # name: run_transfer options (on top of size/steps); tv_weight None = the --tv value
    "raw features": dict(features="raw", tv_weight=0.0),
    "raw + TV": dict(features="raw", tv_weight=None),
    "avgpool, no TV": dict(features="avgpool", tv_weight=0.0),
    "avgpool + TV (default)": dict(features="avgpool", tv_weight=None),
    "coarse-to-fine, 2 scales": dict(scales=2),
    "preact + avgpool": dict(features="preact"),
    "no reflect pad": dict(pad=0),
    "L-BFGS": dict(optimizer="lbfgs"),
    "init noise (Adam)": dict(init="noise"),
    "init noise, L-BFGS, beta 3": dict(init="noise", optimizer="lbfgs", style_weight=3.0),
    "init content+noise": dict(init="content+noise"),
    "preserve colours": dict(preserve_colors=True),
}


def compare(args) -> None:
    import skimage.data as D

    from convlens.images import load_image

    content = D.chelsea()
    style = load_image(style_paths()["starry_night"])
    tiles, rows = [], []
    for name, kw in COMPARISONS.items():
        kw = dict(kw)
        if "tv_weight" in kw and kw["tv_weight"] is None:
            kw["tv_weight"] = args.tv
        r = transfer(content, style, args.grid_size, args.steps, threads=args.threads[0], **kw)
        last = r.history[-1]
        row = {
            "setting": name,
            "options": kw,
            "seconds": round(r.seconds, 1),
            "content_cost": last["content"],
            "style_cost": last["style"],
            "speckle": round(speckle(r.image), 3),
        }
        print(row, flush=True)
        rows.append(row)
        tiles.append(label(r.image, name))
    photo = Image.fromarray(content).resize(tiles[0].size, Image.LANCZOS)
    tiles.append(label(photo, f"content photo (speckle {speckle(photo):.2f})"))
    per_row = 4
    save_jpeg(
        grid([tiles[i : i + per_row] for i in range(0, len(tiles), per_row)]),
        DOCS / "compare_settings.jpg",
    )
    save_results({"compare": {"size": args.grid_size, "steps": args.steps, "rows": rows}})


def gallery(args) -> None:
    styles = style_paths()
    rows, report = [], []
    for cname, img in contents().items():
        row = []
        thumb = Image.fromarray(img)
        thumb.thumbnail((args.size, args.size))
        row.append(label(thumb, cname))
        for sname, spath in styles.items():
            r = transfer(
                img,
                spath,
                args.size,
                args.steps,
                threads=args.threads[0],
                tv_weight=args.tv,
                scales=args.scales,
            )
            save_jpeg(r.image, DOCS / f"{cname}_{sname}.jpg", max_kb=250)
            report.append(
                {
                    "content": cname,
                    "style": sname,
                    "seconds": round(r.seconds, 1),
                    "speckle": round(speckle(r.image), 3),
                }
            )
            print(report[-1], flush=True)
            small = r.image.copy()
            small.thumbnail((256, 256))
            row.append(small)
        rows.append(row)
    compose_gallery()
    save_results(
        {
            "gallery": {
                "size": args.size,
                "steps": args.steps,
                "tv": args.tv,
                "scales": args.scales,
                "runs": report,
            }
        }
    )


def compose_gallery(args=None) -> None:
    """docs/style/gallery.jpg from the per-image files: paintings on top, one photo per row."""
    styles = style_paths()
    header = [Image.new("RGB", (256, 64), "white")]
    for sname, spath in styles.items():
        s = Image.open(spath).convert("RGB")
        s.thumbnail((256, 180))
        header.append(label(s, sname))
    rows = [header]
    for cname, img in contents().items():
        photo = Image.fromarray(img)
        photo.thumbnail((256, 256))
        row = [label(photo, cname)]
        for sname in styles:
            out = Image.open(DOCS / f"{cname}_{sname}.jpg").convert("RGB")
            out.thumbnail((256, 256))
            row.append(out)
        rows.append(row)
    save_jpeg(grid(rows), DOCS / "gallery.jpg")


def large(args) -> None:
    import skimage.data as D

    r = transfer(
        D.astronaut(),
        style_paths()["great_wave"],
        1024,
        args.large_steps,
        scales=3,
        tv_weight=args.tv,
        threads=args.threads[0],
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    save_jpeg(r.image, DOCS / "astronaut_great_wave_1024.jpg", max_kb=300)
    row = {
        "size": 1024,
        "scales": 3,
        "sizes": r.sizes,
        "steps_coarsest": args.large_steps,
        "seconds": round(r.seconds, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "estimated_gib": round(r.estimated_bytes / 2**30, 2),
    }
    print(row, flush=True)
    save_results({"large": row})


# ------------------------------------------------------------------ report


def write_markdown(data: dict) -> None:
    lines = [
        "# Style transfer benchmark",
        "",
        "Written by `benchmarks/style.py` from `style.json`. CPU: 2 cores (the latest speed "
        "rows on a quiet machine; the other sections while other jobs shared it). The speed "
        "rows ran holding /tmp/convlens-bench.lock, naive and ours "
        "alternating in the same process (best of the rounds); the quality runs (settings grid, "
        "gallery, high resolution) ran at nice 19 outside the lock, so their seconds are "
        "indicative only. No GPU was available in this session: no GPU numbers are claimed.",
        "",
    ]
    speed_cells = itemgetter("config", "size", "threads", "steps", "seconds", "s_per_iter")

    def costs(r: dict) -> tuple[str, str]:
        return f"{r['content_cost']:.3g}", f"{r['style_cost']:.3g}"

    if "speed" in data:
        lines += [
            "## Speed: seconds for N Adam iterations (chelsea x starry_night)",
            "",
            *md_table(
                "config | size | threads | steps | seconds | s/iter | speedup vs naive",
                [(*speed_cells(r), f"{r['speedup_vs_naive']}x") for r in data["speed"]],
            ),
            "",
        ]
    if "compare" in data:
        c = data["compare"]
        lines += [
            f"## Settings compared ({c['size']} px, {c['steps']} steps)",
            "",
            *md_table(
                "setting | seconds | content cost | style cost | speckle",
                [(r["setting"], r["seconds"], *costs(r), r["speckle"]) for r in c["rows"]],
            ),
            "",
        ]
    if "gallery" in data:
        g = data["gallery"]
        lines += [
            f"## Gallery runs ({g['size']} px, {g['steps']} steps, tv {g['tv']}, "
            f"scales {g['scales']})",
            "",
            *md_table(
                "content | style | seconds | speckle",
                map(itemgetter("content", "style", "seconds", "speckle"), g["runs"]),
            ),
            "",
        ]
    if "large" in data:
        r = data["large"]
        lines += [
            "## High resolution",
            "",
            f"1024 px, {r['scales']} scales {r['sizes']}: {r['seconds']} s, peak RSS "
            f"{r['peak_rss_gib']} GiB (estimate before starting: {r['estimated_gib']} GiB).",
            "",
        ]
    (RESULTS / "style.md").write_text("\n".join(lines))


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    p = argparse.ArgumentParser()
    p.add_argument(
        "what", nargs="+", choices=["speed", "grid", "gallery", "large", "compose", "all"]
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--tv", type=float, default=300.0)
    p.add_argument("--scales", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--grid-size", type=int, default=256)
    p.add_argument("--large-steps", type=int, default=200)
    args = p.parse_args()
    sections = {"speed": speed, "grid": compare, "gallery": gallery, "large": large,
                "compose": compose_gallery}  # fmt: skip
    # one lock for everything asked: no re-queueing behind other benchmarks between sections
    with bench_lock():
        for what in ["speed", "grid", "gallery", "large"] if "all" in args.what else args.what:
            sections[what](args)


if __name__ == "__main__":
    main()
