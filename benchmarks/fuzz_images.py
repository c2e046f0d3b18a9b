"""Fuzz the default face detector with generated images, in child processes.

    python benchmarks/fuzz_images.py [--count 10000] [--seed 0] [--max-minutes 60]
    CONVLENS_SLOW=1 pytest tests/test_hardening_slow.py   (a shorter run of the same)

Two parts, both through convlens.faces' default detector (DEFAULT_DETECTOR: YuNet since the
open-set work; "auto", HOG then dlib's CNN, before it):
  1. budget: real-size photos (12 MP with no face, 2 MP upside down, a 50 MP JPEG at the
     decode limit, a 100 MP header) each in a fresh child: peak RSS (VmHWM) and wall time
     against the stated budget (<= 2 GB, <= 10 s for 12 MP);
  2. fuzz: --count generated files (tiny to 12 MP, every aspect ratio up to 1:5000 and
     beyond the limit, noise / flat / gradients / face photos resized, rotated and cropped,
     8 formats and modes, truncated and header-corrupted bytes) through face_chips + the
     encoder in worker children. A worker that dies from a signal is a crash (the file is
     recorded and a new worker goes on); an exception other than ConvlensError is a
     traceback; each file's peak RSS is measured by resetting VmHWM (/proc/self/clear_refs).
Writes benchmarks/results/fuzz_images.json and .md, with the load average.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PHOTOS = Path(os.environ.get("CONVLENS_SHARED", ROOT.parent / "shared")) / "data/faces/photos"
BUDGET_BYTES = 2 << 30
BUDGET_SECONDS_12MP = 10.0


# -- the worker (runs in a child) -------------------------------------------------------------


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def worker(paths: list[str]) -> None:
    """One line of JSON per file: status ok|refused|exception, faces, seconds, peak bytes."""
    import torch

    torch.set_num_threads(1)
    from convlens.errors import ConvlensError
    from convlens.faces.pipeline import embed_chips, face_chips, resolve_model

    resolve_model()
    for path in paths:
        print(json.dumps({"start": path}), flush=True)
        _reset_peak()
        start, cpu = time.perf_counter(), time.process_time()
        row = {"path": path}
        try:
            faces, chips = face_chips(path)
            if len(chips):
                embed_chips(chips)
            row.update(status="ok", faces=len(faces))
        except ConvlensError as e:
            row.update(status="refused", error=str(e)[-200:])
        except Exception as e:  # noqa: BLE001 - what the fuzz is looking for
            row.update(status="exception", error=f"{type(e).__name__}: {str(e)[:200]}")
        row.update(
            seconds=round(time.perf_counter() - start, 3),
            cpu_seconds=round(time.process_time() - cpu, 3),
            peak=_peak_rss(),
        )
        print(json.dumps(row), flush=True)


# -- generated inputs -------------------------------------------------------------------------


def _size(rng: np.random.Generator) -> tuple[int, int]:
    r = rng.random()
    if r < 0.72:  # tiny: where dlib crashed
        return int(rng.integers(1, 48)), int(rng.integers(1, 48))
    if r < 0.88:  # small to medium, any aspect within reach of the limit
        w = int(rng.integers(8, 250))
        return w, max(1, int(w * np.exp(rng.uniform(-3.2, 3.2))))
    if r < 0.99:  # extreme strips
        long, short = int(rng.integers(100, 20000)), int(rng.integers(1, 12))
        return (long, short) if rng.random() < 0.5 else (short, long)
    side = int(rng.integers(800, 4000))  # 1% photo-sized, up to 12 MP
    return side, int(side * rng.uniform(0.5, 1.0))


def _pixels(rng: np.random.Generator, w: int, h: int, faces: list) -> np.ndarray:
    kind = rng.integers(0, 4 if faces else 3)
    if kind == 0:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == 1:
        return np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
    if kind == 2:
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        return np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)
    face = faces[int(rng.integers(len(faces)))].rotate(float(rng.choice([0, 90, 180, 270])))
    return np.asarray(face.convert("RGB").resize((w, h)))


def _encode_file(rng: np.random.Generator, arr: np.ndarray) -> bytes:
    from PIL import Image

    img = Image.fromarray(arr)
    fmt = str(rng.choice(["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PNG-16", "PNG-LA"]))
    if fmt == "PNG-16":
        img, fmt = Image.fromarray(arr[..., 0].astype(np.uint16) * 257), "PNG"
    elif fmt == "PNG-LA":
        img, fmt = img.convert("LA"), "PNG"
    elif fmt == "WEBP" and max(img.size) > 16383:
        fmt = "PNG"
    buf = io.BytesIO()
    img.save(buf, fmt)
    data = bytearray(buf.getvalue())
    r = rng.random()
    if r < 0.08:  # truncated
        data = data[: int(len(data) * rng.uniform(0, 0.9))]
    elif r < 0.16:  # flipped bytes in the header (sizes, chunk lengths)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, min(len(data), 64)))
            data[i] = int(rng.integers(0, 256))
    return bytes(data)


def generate(folder: Path, count: int, seed: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = sorted(PHOTOS.glob("*.jpg"))[:6] if PHOTOS.is_dir() else []
    faces = [Image.open(p).copy() for p in photos]
    paths = []
    for i in range(count):
        w, h = _size(rng)
        if w * h > 15_000_000:
            w, h = w, max(1, 15_000_000 // w)
        path = folder / f"{i:05d}.img"
        path.write_bytes(_encode_file(rng, _pixels(rng, w, h, faces)))
        paths.append(str(path))
    return paths


# -- the parent -------------------------------------------------------------------------------


def run_workers(paths: list[str], deadline: float) -> tuple[list[dict], list[dict]]:
    """Rows for every file tried, and the crashes (file, signal); a new worker after each."""
    rows, crashes, i = [], [], 0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    while i < len(paths) and time.time() < deadline:
        chunk = paths[i : i + 500]
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", *chunk],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        current, done = None, 0
        for line in proc.stdout:
            msg = json.loads(line)
            current = msg.get("start")
            if current is None:
                rows.append(msg)
                done += 1
            elif time.time() > deadline:
                proc.kill()
                break
        proc.stdout.close()
        code = proc.wait()
        if code < 0 and current is not None and time.time() <= deadline:
            crashes.append({"path": current, "signal": -code})
            done += 1
        elif code != 0 and time.time() <= deadline:
            raise SystemExit(f"worker failed with {code} before any image")
        i += done
    return rows, crashes


def budget_cases(folder: Path) -> list[tuple[str, str, float]]:
    """(name, path, budget seconds): real-size photos in fresh children."""
    from PIL import Image

    rng = np.random.default_rng(1)
    cases = []
    noise = rng.integers(90, 170, (3000, 4000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noface-12mp.jpg", quality=90)
    cases.append(("12 MP, no face", str(folder / "noface-12mp.jpg"), BUDGET_SECONDS_12MP))
    if PHOTOS.is_dir():
        photo = Image.open(PHOTOS / "obama-1080p.jpg").convert("RGB")
        photo.resize((4000, 2250)).save(folder / "face-9mp.jpg", quality=90)
        cases.append(("9 MP photo of a face", str(folder / "face-9mp.jpg"), BUDGET_SECONDS_12MP))
        photo.resize((1920, 1080)).rotate(180).save(folder / "upside-2mp.jpg")
        cases.append(("2 MP upside down", str(folder / "upside-2mp.jpg"), BUDGET_SECONDS_12MP))
    big = np.broadcast_to(noise[:2000, :2000], (2000, 2000, 3))
    Image.fromarray(np.tile(big, (4, 3, 1))[:7000, :7000]).save(folder / "49mp.jpg", quality=80)
    cases.append(("49 MP JPEG (at the 50 MP limit)", str(folder / "49mp.jpg"), float("nan")))
    return cases


def measure_budget(cases) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = []
    for name, path, limit in cases:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", path], capture_output=True, text=True, env=env
        )
        row = json.loads(proc.stdout.splitlines()[-1]) if proc.returncode == 0 else {}
        keys = ("status", "faces", "seconds", "cpu_seconds", "peak", "error")
        out.append({"case": name, "returncode": proc.returncode, "budget_seconds": limit,
                    **{k: row.get(k) for k in keys}})  # fmt: skip
        peak = row.get("peak", 0) / 2**30
        print(f"{name:34s} rc {proc.returncode}  {row.get('status')}  {row.get('seconds')} s "
              f"(CPU {row.get('cpu_seconds')} s)  peak {peak:.2f} GiB", flush=True)  # fmt: skip
    return out


def summarise(rows: list[dict], crashes: list[dict], budget: list[dict], args, started) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    exceptions = [r for r in rows if r["status"] == "exception"]
    peak_ok = max((r["peak"] for r in ok), default=0)
    return {
        "command": "python benchmarks/fuzz_images.py " + " ".join(sys.argv[1:]),
        "seed": args.seed,
        "inputs_requested": args.count,
        "inputs_tried": len(rows) + len(crashes),
        "accepted": len(ok),
        "refused": len(rows) - len(ok) - len(exceptions),
        "crashes": crashes,
        "tracebacks": exceptions[:50],
        "n_tracebacks": len(exceptions),
        "peak_rss_accepted_bytes": peak_ok,
        "over_budget": [r for r in ok if r["peak"] > BUDGET_BYTES],
        "slowest_seconds": max((r["seconds"] for r in rows), default=0),
        "slowest_cpu_seconds": max((r.get("cpu_seconds", 0) for r in rows), default=0),
        "images_per_second": round(len(rows) / max(1e-9, time.time() - started), 2),
        "budget_bytes": BUDGET_BYTES,
        "budget_cases": budget,
        "load_average_at_end": os.getloadavg(),
    }


def write(report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_images.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Image fuzzing through the default detector", "",
        f"`{report['command']}`; load average at end {report['load_average_at_end'][0]:.1f} "
        f"(2 shared cores: times are noisy)", "",
        "| inputs tried | accepted | refused | crashes | tracebacks | peak RSS (accepted) | rate |",
        "|---|---|---|---|---|---|---|",
        f"| {report['inputs_tried']} | {report['accepted']} | {report['refused']} | "
        f"{len(report['crashes'])} | {report['n_tracebacks']} | "
        f"{report['peak_rss_accepted_bytes'] / 2**30:.2f} GiB | {report['images_per_second']}/s |",
        "", "| budget case | status | wall s | CPU s | peak RSS |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for b in report["budget_cases"]:
        lines.append(f"| {b['case']} | {b['status']} | {b['seconds']} | {b.get('cpu_seconds')} | "
                     f"{(b['peak'] or 0) / 2**30:.2f} GiB |")  # fmt: skip
    (RESULTS / "fuzz_images.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=60.0)
    p.add_argument("--skip-budget", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="write no results; JSON here instead")
    args = p.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="convlens-fuzz-") as tmp:
        folder = Path(tmp)
        budget = [] if args.skip_budget else measure_budget(budget_cases(folder))
        paths = generate(folder, args.count, args.seed)
        rows, crashes = run_workers(paths, started + 60 * args.max_minutes)
    report = summarise(rows, crashes, budget, args, started)
    if args.out:
        args.out.write_text(json.dumps(report))
    else:
        write(report)
    peak = report["peak_rss_accepted_bytes"] / 2**30
    print(f"tried {report['inputs_tried']}, accepted {report['accepted']}, crashes "
          f"{len(crashes)}, tracebacks {report['n_tracebacks']}, peak {peak:.2f} GiB, "
          f"{report['images_per_second']}/s")  # fmt: skip
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
