"""Style-transfer speed: convlens against the naive textbook loop, side by side in one process
under the benchmark lock (`python benchmarks/style.py speed`).

The naive reference (`naive_loop`) is the textbook loop: eager PyTorch, unmodified network
(BatchNorm separate, NCHW), the whole feature network run every step (stem .. head), raw block
outputs tapped with forward hooks, fp32, Adam; targets are computed once with no_grad and the
weights are frozen (every tutorial does both).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from style_common import bench_lock, style_paths, transfer
from style_report import load_results, save_results


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
