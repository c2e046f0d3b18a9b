"""1:K search-only benchmark: gallery identify latency, recall and memory vs face_distance.

For K = 1e4, 1e5, 1e6 random unit-norm 128-d embeddings (one per person) this measures
  * enrolment rate: one-person transactions per second (Gallery.enroll_embeddings, each its
    own transaction, as `convlens faces enroll` does) and bulk rows per second (enroll_batch);
  * search-only latency of one identify (Gallery.search_embeddings, k=1, one query at a time,
    index already built), p50 and p99, in a fresh process that also reports its memory;
  * recall@1 against exact search, for random queries (the hardest case: random unit vectors
    are nearly equidistant) and for noisy copies of gallery vectors (the realistic case: a
    new photo of an enrolled person lands near their embedding);
  * face_recognition.face_distance(known, query) + argmin on the same arrays.
Threads are limited to 2 (the target machine). Run under flock /tmp/convlens-bench.lock:
    flock /tmp/convlens-bench.lock .venv/bin/python benchmarks/search.py
Writes benchmarks/results/search.json and search.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "benchmark-random-unit-vectors"
NOISE = 0.3  # Euclidean norm of the noise added to a gallery vector for "noisy" queries


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def unit_vectors(rng, n, d=128, chunk=100_000) -> np.ndarray:
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - s), d)).astype(np.float32)
        out[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_nn(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    import torch

    from convlens.faces.search import exact_knn

    _, idx = exact_knn(q, torch.from_numpy(x), k=1)
    return idx[:, 0]


def measure_search(db: str, queries: str, n_queries: int) -> dict:
    """Runs in a fresh process: open the gallery, time identify, report memory."""
    import torch

    from convlens.faces.gallery import Gallery

    torch.set_num_threads(2)
    data = np.load(queries)
    base = rss_mib()
    g = Gallery(db, model_id=MODEL)
    t0 = time.perf_counter()
    g.search_embeddings(data["random"][:1], k=1)  # loads the index or the vectors
    load_s = time.perf_counter() - t0
    out = {"load_s": load_s, "rss_mib": rss_mib() - base, "mode": "exact"}
    if g._index.ann is not None:
        out["mode"] = f"ivf-sq8 nlist={g._index.ann.header.nlist} nprobe={g._index.ann.nprobe}"
    for kind in ("random", "noisy"):
        q = data[kind][:n_queries]
        lat, names = [], []
        for v in q:
            t = time.perf_counter()
            r = g.search_embeddings(v[None], k=1)
            lat.append(time.perf_counter() - t)
            names.append(r[0][0][0])
        lat = np.array(lat) * 1e3
        truth = data[f"{kind}_truth"][:n_queries]
        hits = np.mean([nm == f"p{t}" for nm, t in zip(names, truth, strict=True)])
        out[kind] = {
            "p50_ms": float(np.median(lat)),
            "p99_ms": float(np.percentile(lat, 99)),
            "recall_at_1": float(hits),
            "queries": len(q),
        }
    out["rss_after_mib"] = rss_mib() - base
    g.close()
    return out


def run_k(k: int, tmp: Path, n_queries: int, fd_queries: int, seed: int = 0) -> dict:
    import face_recognition  # the reference library

    from convlens.faces.gallery import Gallery

    rng = np.random.default_rng(seed + k)
    x = unit_vectors(rng, k)
    names = [f"p{i}" for i in range(k)]
    db = tmp / f"bench-{k}.db"
    res: dict = {"K": k}
    with Gallery(db, model_id=MODEL) as g:
        n_single = min(2000, k)
        t = time.perf_counter()
        for i in range(n_single):
            g.enroll_embeddings(names[i], x[i : i + 1])
        res["enrol_single_per_s"] = n_single / (time.perf_counter() - t)
        t = time.perf_counter()
        for s in range(n_single, k, 50_000):
            g.enroll_batch(names[s : s + 50_000], x[s : s + 50_000])
        if k > n_single:
            res["enrol_bulk_rows_per_s"] = (k - n_single) / (time.perf_counter() - t)
        t = time.perf_counter()
        g.search_embeddings(x[:1], k=1)  # builds the index when K is above ANN_MIN_SIZE
        res["first_search_s"] = time.perf_counter() - t
    res["db_mib"] = db.stat().st_size / 2**20
    index_file = Path(str(db) + ".index")
    if index_file.exists():
        res["index_mib"] = index_file.stat().st_size / 2**20
    q_rand = unit_vectors(rng, n_queries)
    pick = rng.choice(k, n_queries, replace=False)
    noise = rng.standard_normal((n_queries, 128)).astype(np.float32)
    q_noisy = x[pick] + noise / np.linalg.norm(noise, axis=1, keepdims=True) * NOISE
    queries = tmp / f"queries-{k}.npz"
    np.savez(
        queries,
        random=q_rand,
        noisy=q_noisy,
        random_truth=exact_nn(x, q_rand),
        noisy_truth=exact_nn(x, q_noisy),
    )
    res["noisy_truth_is_source"] = float(np.mean(exact_nn(x, q_noisy) == pick))
    # Exact torch search on the in-memory matrix (what the gallery does below ANN_MIN_SIZE).
    import torch

    from convlens.faces.search import exact_knn

    xt = torch.from_numpy(x)
    sq = (xt * xt).sum(1)
    lat = []
    for v in q_noisy[:50]:
        t = time.perf_counter()
        exact_knn(v[None], xt, k=1, vec_sq=sq)
        lat.append(time.perf_counter() - t)
    res["exact_torch_p50_ms"] = float(np.median(lat) * 1e3)
    res["loadavg_1min"] = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", str(db), str(queries), str(n_queries)],
        capture_output=True,
        text=True,
        check=True,
    )
    res["convlens"] = json.loads(proc.stdout.strip().splitlines()[-1])
    # The reference: face_distance over the whole array, then argmin.
    lat, hits = [], 0
    truth = np.load(queries)["noisy_truth"]
    for i, v in enumerate(q_noisy[:fd_queries]):
        t = time.perf_counter()
        best = int(np.argmin(face_recognition.face_distance(x, v)))
        lat.append(time.perf_counter() - t)
        hits += best == truth[i]
    lat = np.array(lat) * 1e3
    res["face_distance"] = {
        "p50_ms": float(np.median(lat)),
        "p99_ms": float(np.percentile(lat, 99)),
        "recall_at_1": hits / len(lat),
        "queries": len(lat),
        "array_mib": x.nbytes / 2**20,
    }
    res["speedup_p50"] = res["face_distance"]["p50_ms"] / res["convlens"]["noisy"]["p50_ms"]
    db.unlink()
    for extra in tmp.glob(f"bench-{k}.db*"):
        extra.unlink()
    return res


def to_markdown(results: dict) -> str:
    rows = [
        "| K | mode | p50 ms (random / noisy) | p99 ms (random / noisy) | recall@1 random | "
        "recall@1 noisy | face_distance p50 ms | speed-up | memory MiB | enrol /s (single, bulk) "
        "| first search s | exact torch p50 ms | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        c = r["convlens"]
        rows.append(
            f"| {r['K']:.0e} | {c['mode']} | {c['random']['p50_ms']:.2f} / "
            f"{c['noisy']['p50_ms']:.2f} | {c['random']['p99_ms']:.2f} / {c['noisy']['p99_ms']:.2f}"
            f" | {c['random']['recall_at_1']:.3f} | {c['noisy']['recall_at_1']:.3f} | "
            f"{r['face_distance']['p50_ms']:.2f} | {r['speedup_p50']:.0f}x | "
            f"{c['rss_after_mib']:.0f} | {r['enrol_single_per_s']:.0f}, "
            f"{r.get('enrol_bulk_rows_per_s', float('nan')):.0f} | {r['first_search_s']:.1f} | "
            f"{r['exact_torch_p50_ms']:.2f} | {r['loadavg_1min']:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure_search(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e4,1e5,1e6")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--fd-queries", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS / "search"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    runs = []
    with tempfile.TemporaryDirectory(prefix="convlens-bench-") as tmp:
        for size in args.sizes.split(","):
            r = run_k(int(float(size)), Path(tmp), args.queries, args.fd_queries)
            print(json.dumps(r), flush=True)
            runs.append(r)
    results = {
        "machine": {"cpus": os.cpu_count(), "threads": 2},
        "noise_norm": NOISE,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    table = to_markdown(results)
    print(table)
    md = out.with_suffix(".md")
    notes = md.read_text().split("<!-- table -->")[0] if md.exists() else ""
    md.write_text(notes + "<!-- table -->\n" + table + "\n")


if __name__ == "__main__":
    main()
