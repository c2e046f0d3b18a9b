"""VGG19 (original Caffe weights) for Gatys style transfer: evidence, speed, settings, gallery.

    python benchmarks/style_vgg.py filters            # docs/style/vgg19_conv1_1_filters.png
    python benchmarks/style_vgg.py speed --steps 8    # naive vs ours, interleaved, 256/512 px
    python benchmarks/style_vgg.py gallery --seconds 60 --size 256
    python benchmarks/style_vgg.py settings --size 256

(kept apart from benchmarks/style.py; it reuses the lock and image helpers of
benchmarks/style_common.py and the result file.) Results merge into
benchmarks/results/style.json under "vgg_*" keys and benchmarks/results/style_vgg.md.

Speed: 300 iterations of VGG19 at 512 px take tens of minutes per configuration on this
2-core CPU, so each configuration runs `--steps` iterations (after one warm-up step), naive and
ours alternating round by round in one process; seconds for 300 are s/iter x 300, labelled
"extrapolated". The load average is recorded before and after every measurement: the machine
is shared.
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
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from style_common import (  # noqa: E402
    DOCS,
    RESULTS,
    bench_lock,
    contents,
    grid,
    label,
    save_jpeg,
    style_paths,
)

CONTENT = ("features.relu4_2",)
STYLE = tuple(f"features.relu{i}_1" for i in range(1, 6))


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def save(update: dict) -> None:
    path = RESULTS / "style.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(update)
    path.write_text(json.dumps(data, indent=2))
    write_markdown(data)


# ------------------------------------------------------------------ evidence


def filters(args) -> None:
    """conv1_1's 64 filters, each 3x3 RGB scaled to [0, 1] together, enlarged 16x."""
    from convlens.models.vgg import load_vgg19

    w = load_vgg19().features.conv1_1.weight.detach().flip(1)  # BGR -> RGB input channels
    w = (w - w.min()) / (w.max() - w.min())
    tiles = []
    for f in w:
        arr = (f.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        tiles.append(Image.fromarray(arr).resize((48, 48), Image.NEAREST))
    rows = [tiles[i : i + 16] for i in range(0, 64, 16)]
    out = grid(rows, pad=3)
    DOCS.mkdir(parents=True, exist_ok=True)
    out.save(DOCS / "vgg19_conv1_1_filters.png")
    print("wrote", DOCS / "vgg19_conv1_1_filters.png")


# ------------------------------------------------------------------ speed


def _to_t(img: np.ndarray, size: int) -> torch.Tensor:
    h, w = img.shape[:2]
    k = size / max(h, w)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    hw = (round(h * k), round(w * k))
    return torch.nn.functional.interpolate(x, size=hw, mode="bilinear", antialias=True).clamp(0, 1)


def naive_loop(content: np.ndarray, style: np.ndarray, size: int, steps: int) -> float:
    """The textbook loop: the unmodified VGG19 run to pool5 every step, NCHW, fp32, forward
    hooks on relu4_2 and relu{1..5}_1, Adam; targets once under no_grad, weights frozen.
    Returns seconds per iteration (after one warm-up iteration)."""
    from convlens.models.vgg import load_vgg19
    from convlens.style.losses import normalized_gram, style_cost_from_grams

    model = load_vgg19()
    model.requires_grad_(False)
    modules = dict(model.named_modules())
    feats: dict[str, torch.Tensor] = {}
    for name in CONTENT + STYLE:
        modules[name].register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, o))
    c, s = _to_t(content, size), _to_t(style, size)
    with torch.no_grad():
        model(c)
        ct = {n: feats[n].clone() for n in CONTENT}
        model(s)
        gt = {n: normalized_gram(feats[n]) for n in STYLE}
    x = c.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02)
    t0 = 0.0
    for step in range(steps + 1):
        if step == 1:
            t0 = time.perf_counter()
        opt.zero_grad()
        model(x)
        jc = sum(0.5 * (feats[n] - ct[n]).pow(2).sum() / ct[n].numel() for n in CONTENT)
        js = sum(style_cost_from_grams(gt[n], normalized_gram(feats[n])) for n in STYLE)
        (jc + 1e3 * js / len(STYLE)).backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return (time.perf_counter() - t0) / steps


def _nchw_gram(a: torch.Tensor) -> torch.Tensor:
    """The Gram as it was before the channels-last fix: (B, C, P) x (B, P, C), whose gradient
    comes back NCHW whatever the layout of the feature map."""
    f = a.flatten(2)
    return f @ f.transpose(1, 2)


def ours(content, style, size, steps, nchw_gram=False, **kw) -> tuple[float, Image.Image]:
    """Seconds per iteration of run_transfer (1 warm-up step subtracted) and the image."""
    from convlens.style import losses, run_transfer

    common = dict(backbone="vgg19", size=size, progress=False, device="cpu", pad=0)
    fixed, losses.gram = losses.gram, (_nchw_gram if nchw_gram else losses.gram)
    try:
        one = run_transfer(content, style, steps=1, **common, **kw).seconds
        r = run_transfer(content, style, steps=steps + 1, **common, **kw)
    finally:
        losses.gram = fixed
    return (r.seconds - one) / steps, r.image


SPEED_CONFIGS = {
    "naive (full VGG19 to pool5, NCHW, fp32)": None,
    "ours NCHW (truncated after relu5_1)": dict(features="classic", channels_last=False),
    "ours channels-last, Gram gradient NCHW (before the fix)": dict(
        features="classic", nchw_gram=True
    ),
    "ours channels-last (truncated)": dict(features="classic"),
    "ours channels-last + bf16 autocast": dict(features="classic", amp=True),
}


def speed(args) -> None:
    import skimage.data as D

    from convlens.images import load_image

    content, style = D.chelsea(), load_image(style_paths()["starry_night"])
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        best: dict[str, float] = {}
        loads: dict[str, list[str]] = {}
        images: dict[str, Image.Image] = {}
        with bench_lock():
            for _ in range(args.rounds):
                for name, kw in SPEED_CONFIGS.items():
                    before = load()
                    if kw is None:
                        secs = naive_loop(content, style, size, args.steps)
                    else:
                        secs, images[name] = ours(content, style, size, args.steps, **kw)
                    loads.setdefault(name, []).append(f"{before} -> {load()}")
                    best[name] = min(secs, best.get(name, float("inf")))
                    print(f"{size} px {name}: {secs:.3f} s/iter (load {loads[name][-1]})")
        fp32 = np.asarray(images["ours channels-last (truncated)"], np.float64)
        bf16 = np.asarray(images["ours channels-last + bf16 autocast"], np.float64)
        base = best[next(iter(SPEED_CONFIGS))]
        for name, secs in best.items():
            rows.append({
                "config": name, "size": size, "threads": args.threads, "steps_measured":
                args.steps, "rounds": args.rounds, "s_per_iter": round(secs, 3),
                "seconds_300_extrapolated": round(300 * secs, 1),
                "speedup_vs_naive": round(base / secs, 2), "load_avg_1_5_15": loads[name],
            })  # fmt: skip
        rows.append({"config": "bf16 vs fp32 image, mean |diff| (0..255)", "size": size,
                     "threads": args.threads,
                     "value": round(float(np.abs(fp32 - bf16).mean()), 2)})  # fmt: skip
        pair = [label(images["ours channels-last (truncated)"], "fp32"),
                label(images["ours channels-last + bf16 autocast"], "bf16 autocast")]  # fmt: skip
        save_jpeg(grid([pair]), DOCS / f"vgg19_bf16_{size}.jpg", max_kb=400)
    done = {(r["size"], r.get("threads", 1)) for r in rows}
    old = json.loads((RESULTS / "style.json").read_text()).get("vgg_speed", [])
    keep = [r for r in old if (r["size"], r.get("threads", 1)) not in done]
    save({"vgg_speed": keep + rows})


# ------------------------------------------------------------------ gallery at equal time


class _Stop(Exception):
    pass


class Budget:
    """Stops run_transfer once `seconds` of optimisation have passed, keeping the last image."""

    def __init__(self, seconds: float):
        self.seconds, self.t0, self.image, self.steps = seconds, None, None, 0

    def __call__(self, event) -> None:
        from convlens.style import StepEvent

        if not isinstance(event, StepEvent):
            return
        self.t0 = self.t0 or time.perf_counter()
        self.steps += 1
        if time.perf_counter() - self.t0 >= self.seconds:
            self.image = event.image()
            raise _Stop


def within(seconds: float, content, style, **kw) -> tuple[Image.Image, int]:
    """The image run_transfer has after `seconds` (or at the end of its steps)."""
    from convlens.style import run_transfer

    budget = Budget(seconds)
    try:
        img = run_transfer(content, style, steps=100_000, progress=False, device="cpu",
                           callback=budget, **kw).image  # fmt: skip
    except _Stop:
        img = budget.image
    return img, budget.steps


BACKBONES = {
    "VGG19 (avgpool preset)": dict(backbone="vgg19", features="avgpool"),
    "Lite0 (default)": dict(backbone="efficientnet-lite0"),
}


def gallery(args) -> None:
    from convlens.style.fast import FastStylizer

    torch.set_num_threads(args.threads)
    fast = FastStylizer(device="cpu")
    header = [label(Image.new("RGB", (args.size, 40), "white"), "photo")]
    header += [label(Image.new("RGB", (args.size, 40), "white"), f"{n}, {args.seconds:g} s")
               for n in BACKBONES] + [label(Image.new("RGB", (args.size, 40), "white"),
                                            "fast (Magenta), one pass")]  # fmt: skip
    rows, runs = [header], []
    for sname, spath in style_paths().items():
        for cname, img in contents().items():
            photo = Image.fromarray(img)
            photo.thumbnail((args.size, args.size))
            row = [label(photo, f"{cname} x {sname}")]
            for name, kw in BACKBONES.items():
                out, steps = within(args.seconds, img, spath, size=args.size, **kw)
                runs.append({"photo": cname, "style": sname, "backbone": name, "steps": steps,
                             "seconds": args.seconds, "load": load()})  # fmt: skip
                print(runs[-1], flush=True)
                row.append(label(out, f"{steps} steps"))
            t = time.perf_counter()
            row.append(label(fast.stylize(img, spath, size=args.size),
                             f"{time.perf_counter() - t:.2f} s"))  # fmt: skip
            rows.append(row)
    save_jpeg(grid(rows), DOCS / "vgg19_vs_lite0.jpg", max_kb=900)
    save({"vgg_gallery": {"size": args.size, "seconds": args.seconds, "threads": args.threads,
                          "runs": runs}})  # fmt: skip


def equal_steps(args) -> None:
    """Both backbones given the same number of Adam steps (what each does when it may
    converge), on two photo x painting pairs."""
    from convlens.style import run_transfer

    torch.set_num_threads(args.threads)
    pairs = [("chelsea", "starry_night"), ("astronaut", "the_scream")]
    photos, styles = contents(), style_paths()
    rows, runs = [], []
    for cname, sname in pairs:
        photo = Image.fromarray(photos[cname])
        photo.thumbnail((args.size, args.size))
        row = [label(photo, f"{cname} x {sname}")]
        for name, kw in BACKBONES.items():
            r = run_transfer(photos[cname], styles[sname], size=args.size, steps=args.steps,
                             progress=False, device="cpu", **kw)  # fmt: skip
            runs.append({"photo": cname, "style": sname, "backbone": name, "steps": args.steps,
                         "seconds": round(r.seconds, 1), "load": load()})  # fmt: skip
            print(runs[-1], flush=True)
            row.append(label(r.image, f"{name}: {args.steps} steps, {r.seconds:.0f} s"))
        rows.append(row)
    save_jpeg(grid(rows), DOCS / "vgg19_vs_lite0_steps.jpg", max_kb=600)
    save({"vgg_equal_steps": {"size": args.size, "runs": runs}})


# ------------------------------------------------------------------ settings grid


GRID_BETAS = (0.002, 0.006, 0.02)
GRID_CONTENT = ("conv4_2", "relu3_2")
GRID_POOL = (("avg", True), ("max", False))


def grid_photos(size: int) -> dict[str, np.ndarray]:
    """A face (obama.jpg cropped to head and shoulders: top half, middle 60 %) and a
    landscape-ish photo (skimage's rocket: sky, trees, a launch tower)."""
    import skimage.data as D

    face = contents()["obama"]
    h, w = face.shape[:2]
    face = face[: h // 2, w // 5 : w - w // 5]
    return {"face (obama)": face, "rocket": D.rocket()}


def settings_grid(args) -> None:
    """VGG19 x starry_night: style weight (columns) x content layer x pooling (rows), for a
    face and a landscape; docs/style/vgg19_settings.jpg."""
    from convlens.style import run_transfer

    torch.set_num_threads(args.threads)
    style = style_paths()["starry_night"]
    head = [label(Image.new("RGB", (args.size, 40), "white"), "photo / setting")]
    head += [label(Image.new("RGB", (args.size, 40), "white"), f"beta {b:g}") for b in GRID_BETAS]
    rows, runs = [head], []
    for pname, img in grid_photos(args.size).items():
        for content in GRID_CONTENT:
            for pool, avg in GRID_POOL:
                photo = Image.fromarray(img)
                photo.thumbnail((args.size, args.size))
                row = [label(photo, f"{pname}: {content}, {pool} pool")]
                for beta in GRID_BETAS:
                    r = run_transfer(img, style, backbone="vgg19", size=args.size,
                                     steps=args.steps, style_weight=beta, avgpool=avg,
                                     content_layers=[content], progress=False,
                                     device="cpu")  # fmt: skip
                    runs.append({"photo": pname, "content": content, "pool": pool,
                                 "beta": beta, "steps": args.steps,
                                 "seconds": round(r.seconds, 1), "load": load()})  # fmt: skip
                    print(runs[-1], flush=True)
                    row.append(label(r.image, f"{content} {pool} b={beta:g}"))
                rows.append(row)
    save_jpeg(grid(rows), DOCS / "vgg19_settings.jpg", max_kb=700)
    save({"vgg_settings": {"size": args.size, "steps": args.steps, "style": "starry_night",
                           "threads": args.threads, "runs": runs}})  # fmt: skip


# ------------------------------------------------------------------ report


def write_markdown(data: dict) -> None:
    lines = ["# VGG19 style transfer (benchmarks/style_vgg.py)", ""]
    if "vgg_speed" in data:
        lines += [
            "## Speed: Adam iterations, chelsea x starry_night, content relu4_2, style "
            "relu1_1..relu5_1 (seconds for 300 extrapolated from the measured s/iter)",
            "",
            "| config | size | threads | iterations measured | s/iter | 300 iterations (s) "
            "| vs naive | load avg |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in data["vgg_speed"]:
            if "value" in r:
                lines.append(
                    f"| {r['config']} | {r['size']} | {r.get('threads', 1)} | | {r['value']} "
                    "| | | |"
                )
                continue
            lines.append(
                f"| {r['config']} | {r['size']} | {r['threads']} | {r['steps_measured']} | "
                f"{r['s_per_iter']} | "
                f"{r['seconds_300_extrapolated']} | {r['speedup_vs_naive']}x | "
                f"{'; '.join(r['load_avg_1_5_15'])} |"
            )
        lines.append("")
    for key, title in (("vgg_gallery", "Gallery at equal time"),
                       ("vgg_equal_steps", "Equal steps"),
                       ("vgg_settings", "Settings grid")):  # fmt: skip
        if key in data:
            lines += [f"## {title}", "", "```", json.dumps(data[key], indent=1), "```", ""]
    (RESULTS / "style_vgg.md").write_text("\n".join(lines))


SECTIONS = {
    "filters": filters,
    "speed": speed,
    "gallery": gallery,
    "steps": equal_steps,
    "settings": settings_grid,
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="+", choices=sorted(SECTIONS))
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args()
    for what in args.what:
        SECTIONS[what](args)


if __name__ == "__main__":
    main()
