"""1:K search on PostgreSQL + pgvector (HNSW) beside the SQLite + FAISS gallery, same data,
same run: bulk load time, identify latency p50/p99 (one query at a time, through
Gallery.identify_embeddings), recall@1 against exact search for noisy copies of enrolled
vectors (a new photo of an enrolled person) and for random unit vectors (the hardest case).

    .venv/bin/python benchmarks/pg_search.py [--sizes 100000] [--queries 200]

Needs pgserver (a private PostgreSQL 16 + pgvector 0.6 in a temporary folder). Writes
benchmarks/results/pg_search.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from operator import itemgetter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from bench_report import md_table, run_meta, write_results  # noqa: E402

from convlens.faces.gallery.pgindex import EF_SEARCH  # noqa: E402

MODEL = "benchmark-random-unit-vectors"
NOISE = 0.3


def unit(rng, n, dim=128):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exact_top1(vecs: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = []
    for s in range(0, len(queries), 20):  # (20, n) distances at a time: 80 MB at 10^6
        q = queries[s : s + 20]
        d = (q**2).sum(1)[:, None] - 2 * q @ vecs.T + (vecs**2).sum(1)[None]
        out.append(d.argmin(1))
    return np.concatenate(out)


def measure(where, names, vecs, queries: dict) -> dict:
    from convlens.faces import Gallery

    with Gallery(where, model_id=MODEL) as g:
        t = time.perf_counter()
        for s in range(0, len(vecs), 20_000):
            g.enroll_batch(names[s : s + 20_000], vecs[s : s + 20_000], model_id=MODEL)
        load = time.perf_counter() - t
        t = time.perf_counter()
        g.identify_embeddings(queries["noisy"][:1])  # build (HNSW) or load (FAISS) the index
        out = {"load_s": round(load, 1), "index_s": round(time.perf_counter() - t, 1)}
        for kind, q in queries.items():
            truth = [names[i] for i in exact_top1(vecs, q)]
            lat, hits = [], 0
            for qv, want in zip(q, truth, strict=True):
                t = time.perf_counter()
                (m,) = g.identify_embeddings(qv[None], k=1)
                lat.append(time.perf_counter() - t)
                hits += m.candidates[0].name == want
            ms = np.asarray(lat) * 1000
            out[kind] = {
                "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
                "recall_at_1": round(hits / len(q), 4),
            }
    return out


def main() -> None:
    import pgserver

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    load_before = os.getloadavg()
    pg_root = tempfile.mkdtemp(prefix="convlens-pg-")
    tmp = Path(tempfile.mkdtemp(prefix="convlens-pgsearch-"))
    srv = pgserver.get_server(pg_root, cleanup_mode="stop")
    rows = []
    try:
        for n in args.sizes:
            rng = np.random.default_rng(n)
            vecs = unit(rng, n)
            names = [f"p{i}" for i in range(n)]
            pick = rng.choice(n, args.queries, replace=False)
            noisy = vecs[pick] + NOISE / np.sqrt(128) * rng.normal(size=(args.queries, 128))
            queries = {"noisy": noisy.astype(np.float32), "random": unit(rng, args.queries)}
            db = f"k{n}"
            srv.psql(f"CREATE DATABASE {db};")
            url = srv.get_uri().replace("/postgres?", f"/{db}?")
            for backend, where in (("sqlite+faiss", tmp / f"{db}.db"), ("postgres+hnsw", url)):
                r = {"size": n, "backend": backend, **measure(where, names, vecs, queries)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    finally:
        srv.cleanup()
        shutil.rmtree(pg_root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    write(rows, args, load_before)


def write(rows, args, load_before) -> None:
    first = itemgetter("size", "backend", "load_s", "index_s")
    noisy = itemgetter("p50_ms", "p99_ms", "recall_at_1")
    random = itemgetter("p50_ms", "recall_at_1")
    meta = {**run_meta(load_before), "queries": args.queries, "hnsw_ef_search": EF_SEARCH}
    lines = [
        "# 1:K search: PostgreSQL + pgvector HNSW beside SQLite + FAISS IVF",
        "",
        f"`{meta['command']}`; load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']} (shared 2-core machine: noisy). One query at a time through "
        f"Gallery.identify_embeddings; HNSW ef_search {EF_SEARCH}; index s: the first search "
        "(builds the HNSW index / loads the FAISS one).",
        "",
        *md_table(
            "embeddings | backend | bulk load s | index s | noisy p50 ms | noisy p99 ms | "
            "noisy recall@1 | random p50 ms | random recall@1",
            [(*first(r), *noisy(r["noisy"]), *random(r["random"])) for r in rows],
        ),
    ]
    write_results("pg_search", meta, rows, lines)


if __name__ == "__main__":
    main()
