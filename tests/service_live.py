"""Helpers for the service tests: API keys in a fresh key file, the service in process
(FastAPI's TestClient), and a live `convlens serve` on a free loopback port (a real uvicorn
process, as users run it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from convlens.service.keys import KeyStore

ROOT = Path(__file__).resolve().parents[1]


def make_keys(path: Path) -> dict[str, str]:
    """One key per scope, plus a revoked admin key: scope -> plain key."""
    store = KeyStore(path)
    keys = {scope: store.create(f"test-{scope}", scope)[1] for scope in store_scopes()}
    revoked = store.create("revoked", "admin")
    store.revoke(revoked[0].id)
    keys["revoked"] = revoked[1]
    return keys


@contextmanager
def in_process(root: Path) -> Iterator[tuple]:
    """The service in this process (FastAPI's TestClient) over a new gallery and key file in
    `root`, without rate limits: (client, keys as make_keys gives them)."""
    from fastapi.testclient import TestClient

    from convlens.service import ServiceConfig, create_app

    keys = make_keys(root / "keys.db")
    app = create_app(ServiceConfig(db=root / "g.db", keys=root / "keys.db", rate=0))
    with TestClient(app) as client:
        yield client, keys


def store_scopes() -> tuple[str, ...]:
    from convlens.service.keys import SCOPES

    return SCOPES


class LiveServer:
    """`python -m convlens serve --port 0 ...` in a subprocess; .url once it answers."""

    def __init__(self, db, keys: Path, *extra: str, timeout: float = 120.0):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "convlens", "serve", "--db", str(db), "--keys", str(keys)]
        self.proc = subprocess.Popen(
            [*argv, "--port", "0", *extra],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.log: list[str] = []
        found = threading.Event()
        self.url = None

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"(http://127\.0\.0\.1:\d+)/app/", line)
                if m and self.url is None:
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("convlens serve did not start:\n" + "".join(self.log))
        self.host, self.port = self.url[7:].split(":")[0], int(self.url.rsplit(":", 1)[1])

    def get_json(self, path: str, key: str | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, headers={"x-api-key": key} if key else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return "".join(self.log)

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
