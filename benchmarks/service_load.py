"""Load on `convlens serve` over loopback: 32 and 128 concurrent clients, bounded time.

For each backend (SQLite; PostgreSQL + pgvector with two replicas, when pgserver is
installed) and each client count, three phases of --seconds each:
  * identify-photo: POST /api/v1/identify with a 640 px photo of two known faces (detection
    and encoding on the server's bounded worker pool: the CPU-bound case);
  * identify-embedding: POST /api/v1/embeddings/identify (no encoding: the service's own
    overhead, auth, JSON and the gallery search);
  * enrol: POST /api/v1/people/{unique name}/embeddings, 2 embeddings each.
Every client keeps one HTTP/1.1 connection. Afterwards every acknowledged (201) enrolment
must be in the gallery exactly once, and nothing else: checked through the API.
503 answers (full queue) are counted apart from errors; a client told 503 waits the
Retry-After second before its next request, as a polite client does.

    .venv/bin/python benchmarks/service_load.py [--seconds 10] [--clients 32 128]

Writes benchmarks/results/service_load.json and .md. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from operator import itemgetter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
PHOTOS = ROOT.parent / "shared" / "data" / "faces" / "photos"

from bench_report import md_table, run_meta, write_results  # noqa: E402
from service_live import LiveServer, make_keys  # noqa: E402


def photo_b64(name: str, side: int = 640) -> str:
    from PIL import Image

    img = Image.open(PHOTOS / name).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


class Client:
    """One keep-alive connection; .call(method, path, body) -> (status, seconds)."""

    def __init__(self, server, key: str):
        self.server, self.key = server, key
        self.con = http.client.HTTPConnection(server.host, server.port, timeout=120)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, float]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"x-api-key": self.key, "content-type": "application/json"}
        started = time.perf_counter()
        try:
            self.con.request(method, path, body=data, headers=headers)
            r = self.con.getresponse()
            r.read()
            status = r.status
        except (OSError, http.client.HTTPException):
            self.con.close()
            self.con = http.client.HTTPConnection(self.server.host, self.server.port, timeout=120)
            status = 0
        return status, time.perf_counter() - started


def run_phase(servers, key, clients: int, seconds: float, make_request) -> dict:
    """`clients` threads sending make_request(client_no, i) until the time is up."""
    stop = time.monotonic() + seconds
    lat, statuses, acked, lock = [], {}, [], threading.Lock()

    def worker(c: int):
        client = Client(servers[c % len(servers)], key)
        i = 0
        while time.monotonic() < stop:
            method, path, body, tag = make_request(c, i)
            status, dt = client.call(method, path, body)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status in (200, 201):
                    lat.append(dt)
                    if tag is not None:
                        acked.append(tag)
            i += 1
            if status == 503:
                time.sleep(1.0)  # as told by Retry-After
        client.con.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = sum(v for k, v in statuses.items() if k in (200, 201))
    ms = np.asarray(lat) * 1000 if lat else np.asarray([np.nan])
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "ok": ok,
        "per_second": round(ok / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "busy_503": statuses.get(503, 0),
        "errors": sum(v for k, v in statuses.items() if k not in (200, 201, 503)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "acked": acked,
    }


def check_enrolments(server, key: str, acked: list[str]) -> dict:
    """Every acknowledged enrolment present exactly once (2 embeddings), nothing else."""
    client = Client(server, key)
    client.con.request("GET", "/api/v1/people?size=1000&page=0", headers={"x-api-key": key})
    total = json.loads(client.con.getresponse().read())["total"]
    people = {}
    for page in range((total + 999) // 1000):
        client.con.request("GET", f"/api/v1/people?size=1000&page={page}",
                           headers={"x-api-key": key})  # fmt: skip
        for p in json.loads(client.con.getresponse().read())["people"]:
            people[p["name"]] = p["photos"]
    load = {n: c for n, c in people.items() if n.startswith("load-")}
    return {
        "acknowledged": len(acked),
        "present": len(load),
        "exactly_once": load == dict.fromkeys(acked, 2),
        "duplicated_acks": len(acked) - len(set(acked)),
    }


def bench_backend(name: str, db, replicas: int, args, keys_path: Path, keys: dict) -> list[dict]:
    extra = ("--rate", "0", "--workers", str(args.workers), "--queue", str(args.queue))
    servers = [LiveServer(db, keys_path, *extra) for _ in range(replicas)]
    rows = []
    try:
        model_id = servers[0].get_json("/api/v1/model", keys["read"])[1]["model_id"]
        photo = photo_b64("biden.jpg")
        boot = Client(servers[0], keys["admin"])
        for who, f in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
            boot.call("POST", f"/api/v1/people/{who}/photos", {"images": [photo_b64(f)]})
        rng = np.random.default_rng(0)
        query = rng.normal(size=(1, 128)).tolist()
        acked_all = []  # every client count's, on this gallery
        for clients in args.clients:
            phases = {
                "identify-photo": lambda c, i: ("POST", "/api/v1/identify",
                                                {"image": photo}, None),
                "identify-embedding": lambda c, i: ("POST", "/api/v1/embeddings/identify",
                                                    {"model_id": model_id, "embeddings": query},
                                                    None),
                "enrol": lambda c, i, n=clients: (
                    "POST", f"/api/v1/people/{urllib.parse.quote(f'load-{n}-{c}-{i}')}/embeddings",
                    {"model_id": model_id,
                     "embeddings": np.random.default_rng(i).normal(size=(2, 128)).tolist()},
                    f"load-{n}-{c}-{i}"),
            }  # fmt: skip
            for phase, make in phases.items():
                r = run_phase(servers, keys["admin"], clients, args.seconds, make)
                acked_all += r.pop("acked")
                rows.append({"backend": name, "replicas": replicas, "phase": phase, **r})
                print(json.dumps(rows[-1]), flush=True)
            check = check_enrolments(servers[-1], keys["read"], acked_all)
            rows[-1]["check"] = check
            print(json.dumps(check), flush=True)
    finally:
        logs = [s.stop() for s in servers]
        if any("Traceback" in log for log in logs):
            print("a server logged a traceback", file=sys.stderr)
    return rows


def postgres_url(root: str):
    try:
        import pgserver
    except ImportError:
        return None, None
    srv = pgserver.get_server(root, cleanup_mode="stop")
    return srv, srv.get_uri()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=16)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="convlens-load-"))
    keys = make_keys(tmp / "keys.db")
    rows = bench_backend("sqlite", tmp / "g.db", 1, args, tmp / "keys.db", keys)
    srv = None
    if not args.no_postgres:
        pg_root = tempfile.mkdtemp(prefix="convlens-pg-")
        srv, url = postgres_url(pg_root)
        if url:
            rows += bench_backend("postgres", url, 2, args, tmp / "keys.db", keys)
    if srv is not None:
        srv.cleanup()
        shutil.rmtree(pg_root, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    write(rows, args, load_before, os.getloadavg())


def write(rows, args, load_before, load_after) -> None:
    keys = "backend replicas phase clients ok per_second p50_ms p99_ms busy_503 errors"
    cells = itemgetter(*keys.split())
    meta = {
        **run_meta(load_before, load_after),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "queue": args.queue,
        "seconds_per_phase": args.seconds,
    }
    lines = [
        "# convlens serve under load (loopback)",
        "",
        f"`{meta['command']}`; {meta['cpus']} CPUs; load average before "
        f"{meta['loadavg_before']}, after {meta['loadavg_after']} (shared machine: noisy); "
        f"{args.workers} encoder workers per server, queue {args.queue}.",
        "",
        *md_table(
            "backend | replicas | phase | clients | ok | req/s | p50 ms | p99 ms | 503 | errors | "
            "acked enrolments present exactly once",
            [(*cells(r), _once(r.get("check"))) for r in rows],
        ),
    ]
    write_results("service_load", meta, rows, lines)


def _once(check: dict | None) -> str:
    """The enrol phase's check: acknowledged enrolments present exactly once."""
    if check is None:
        return ""
    return f"{check['present']}/{check['acknowledged']}: {'yes' if check['exactly_once'] else 'NO'}"


if __name__ == "__main__":
    main()
