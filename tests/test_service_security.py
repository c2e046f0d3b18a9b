"""Abuse, against a live `convlens serve` on a loopback port: keys (none, wrong, revoked →
401; wrong scope → 403), oversized bodies (413), decompression bombs and malformed multipart
(400, the server still answers), hostile names, slow clients, a full worker queue (503),
rate limits (429), closed CORS, nothing secret in the log, and many concurrent enrolments
of which none is lost."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import struct
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
from service_live import LiveServer, make_keys  # noqa: E402

from convlens.cli import main  # noqa: E402
from convlens.service.errors import ApiError  # noqa: E402
from convlens.service.keys import KeyStore  # noqa: E402
from convlens.service.workers import WorkerPool  # noqa: E402

DIM = 128


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    keys = make_keys(root / "keys.db")
    extra = ("--max-body-mb", "1", "--timeout", "1", "--rate", "0", "--workers", "2")
    with LiveServer(root / "g.db", root / "keys.db", *extra) as server:
        server.model_id = server.get_json("/api/v1/model", keys["read"])[1]["model_id"]
        yield server, keys


def request(server, method, path, key=None, body=None, headers=None):
    """(status, parsed JSON body, headers) of one request over a fresh connection."""
    hdrs = dict(headers or {})
    if key:
        hdrs["x-api-key"] = key
    data = body
    if isinstance(body, dict | list):
        data, hdrs["content-type"] = json.dumps(body).encode(), "application/json"
    req = urllib.request.Request(server.url + path, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers


def enrol(server, key, name, vecs):
    body = {"model_id": server.model_id, "embeddings": np.asarray(vecs).tolist()}
    return request(server, "POST", f"/api/v1/people/{urllib.parse.quote(name, safe='')}"
                   "/embeddings", key, body)  # fmt: skip


@pytest.mark.parametrize("who", [None, "cl_000000000000_wrong", "garbage", "revoked"])
def test_no_wrong_or_revoked_key_is_401(live, who):
    server, keys = live
    key = keys.get(who, who)
    status, body, headers = request(server, "GET", "/api/v1/people", key)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    # a real key's id with a wrong secret
    real_id = keys["admin"].split("_")[1]
    assert request(server, "GET", "/api/v1/people", f"cl_{real_id}_x")[0] == 401
    assert request(server, "GET", "/health")[0] == 200


def test_scopes_are_enforced(live):
    server, keys = live
    vec = np.ones((1, DIM), np.float32) / np.sqrt(DIM)
    assert enrol(server, keys["recognize"], "scoped", vec)[0] == 403
    assert enrol(server, keys["read"], "scoped", vec)[0] == 403
    assert enrol(server, keys["enroll"], "scoped", vec)[0] == 201
    assert request(server, "DELETE", "/api/v1/people/scoped", keys["recognize"])[0] == 403
    body = {"model_id": server.model_id, "embeddings": vec.tolist()}
    assert request(server, "POST", "/api/v1/embeddings/identify", keys["read"], body)[0] == 403
    assert request(server, "POST", "/api/v1/embeddings/identify", keys["recognize"], body)[0] == 200
    assert request(server, "POST", "/api/v1/calibration", keys["enroll"], {"far": 0.1})[0] == 403
    assert request(server, "DELETE", "/api/v1/people/scoped", keys["enroll"])[0] == 200


def _png(width: int, height: int) -> bytes:
    """A valid grey PNG of any declared size: a few kB of zlib for gigabytes of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c))

    raw = zlib.compress(b"\0" * (width + 1) * 64, 9)  # the first rows only: enough
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, dict]:
    b = "convlensboundary"
    out = io.BytesIO()
    for field, filename, data in parts:
        out.write(f'--{b}\r\nContent-Disposition: form-data; name="{field}"; '
                  f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'.encode())  # fmt: skip
        out.write(data + b"\r\n")
    out.write(f"--{b}--\r\n".encode())
    return out.getvalue(), {"content-type": f"multipart/form-data; boundary={b}"}


def _head(key: str, length: bytes) -> bytes:
    """A JSON POST's request line and headers, by hand (to send the body as we like)."""
    return (
        b"POST /api/v1/identify HTTP/1.1\r\nHost: x\r\nx-api-key: " + key.encode()
        + b"\r\ncontent-type: application/json\r\n" + length + b"\r\n\r\n"
    )  # fmt: skip


def test_bombs_malformed_bodies_and_oversize_are_refused_and_the_server_lives(live):
    server, keys = live
    key = keys["recognize"]
    bomb, headers = _multipart([("image", "bomb.png", _png(60_000, 60_000))])
    assert len(bomb) < 1_000_000
    status, body, _ = request(server, "POST", "/api/v1/identify", key, bomb, headers)
    assert status == 400 and body["error"]["code"] == "too_many_pixels"
    broken = b'--convlensboundary\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc'
    status, body, _ = request(server, "POST", "/api/v1/identify", key, broken, headers)
    assert status == 400, body
    status, body, _ = request(
        server, "POST", "/api/v1/identify", key, b"{nope", {"content-type": "application/json"}
    )
    assert status == 400
    # An announced length over the limit is refused before the body is read. By hand: the
    # server answers and closes while a client like urllib may still be writing (EPIPE there).
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(_head(key, b"content-length: 1100000"))
        reply = b""
        while chunk := s.recv(4096):  # the server closes after its answer
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"too_large" in reply
    # streamed without a Content-Length: counted as it arrives
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(_head(key, b"transfer-encoding: chunked"))
        # The server may answer and close before the last chunks: stop writing then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(12):
                s.sendall(b"%x\r\n" % 100_000 + b"a" * 100_000 + b"\r\n")
        reply = s.recv(200)
    assert reply.startswith(b"HTTP/1.1 413")
    assert request(server, "GET", "/health")[0] == 200
    assert server.proc.poll() is None


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a/b", "..", "tab\there", "nul\x00", "x" * 101]
)
def test_hostile_names_are_refused(live, name):
    server, keys = live
    vec = np.full((1, DIM), 0.05, np.float32)
    status, body, _ = enrol(server, keys["enroll"], name, vec)
    assert status in (400, 404), body  # 404: the router saw a path with more segments
    assert "error" in body


def test_quotes_and_sql_are_stored_verbatim(live):
    server, keys = live
    names = ['O\'Brien "Bob"', "Robert'); DROP TABLE people;--", "1 OR 1=1", "Zoë 李"]
    rng = np.random.default_rng(1)
    for name in names:
        assert enrol(server, keys["enroll"], name, rng.normal(size=(1, DIM)))[0] == 201
    people = request(server, "GET", "/api/v1/people?size=1000", keys["read"])[1]["people"]
    stored = {p["name"] for p in people}
    assert set(names) <= stored
    for name in names:
        path = f"/api/v1/people/{urllib.parse.quote(name, safe='')}"
        assert request(server, "DELETE", path, keys["enroll"])[1]["erased"] == 1


def test_slow_clients_are_cut_off(live):
    server, keys = live
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"GET /api/v1/people HTTP/1.1\r\nHost: x\r\n")  # and never finish
        started = time.monotonic()
        assert s.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 5
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(_head(keys["recognize"], b"content-length: 1000") + b"{")
        reply = s.recv(200)
    assert reply.startswith(b"HTTP/1.1 408"), reply


def test_cors_is_closed_and_nothing_secret_is_logged(live):
    server, keys = live
    status, _, headers = request(
        server, "GET", "/api/v1/people", keys["read"], headers={"origin": "http://evil.example"}
    )
    assert status == 200 and "access-control-allow-origin" not in headers
    pre = {"origin": "http://evil.example", "access-control-request-method": "POST",
           "access-control-request-headers": "x-api-key"}  # fmt: skip
    status, _, headers = request(server, "OPTIONS", "/api/v1/identify", headers=pre)
    assert "access-control-allow-origin" not in headers
    log = "".join(server.log)
    assert "/api/v1/people" in log  # requests are logged...
    for key in keys.values():
        assert key.split("_", 2)[2] not in log  # ...without their keys


def test_concurrent_enrolments_lose_nothing(live):
    server, keys = live
    rng = np.random.default_rng(2)
    jobs = [(f"crowd-{i:03d}", rng.normal(size=(2, DIM))) for i in range(96)]
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda j: enrol(server, keys["enroll"], *j), jobs))
    acknowledged = [name for (name, _), (status, _, _) in zip(jobs, results, strict=True)
                    if status == 201]  # fmt: skip
    busy = [r for r in results if r[0] == 503]
    assert len(acknowledged) + len(busy) == len(jobs)
    assert len(acknowledged) >= len(jobs) // 2
    people = request(server, "GET", "/api/v1/people?size=1000", keys["read"])[1]["people"]
    crowd = {p["name"]: p["photos"] for p in people if p["name"].startswith("crowd-")}
    assert crowd == dict.fromkeys(acknowledged, 2)  # each exactly once, nothing else


def test_full_queue_answers_503_with_retry_after():
    import threading

    release = threading.Event()

    class NoGallery:
        def close(self):
            pass

    pool = WorkerPool(NoGallery, workers=1, queue=0)

    async def go():
        first = asyncio.ensure_future(pool.run(lambda g: release.wait(10)))
        await asyncio.sleep(0.1)
        with pytest.raises(ApiError) as e:
            await pool.run(lambda g: None)
        release.set()
        await first
        return e.value

    err = asyncio.run(go())
    pool.close()
    assert err.status == 503 and err.headers == {"Retry-After": "1"}


def test_rate_limit_is_429_per_key(tmp_path):
    from fastapi.testclient import TestClient

    from convlens.service import ServiceConfig, create_app

    keys = make_keys(tmp_path / "keys.db")
    app = create_app(ServiceConfig(db=tmp_path / "g.db", keys=tmp_path / "keys.db", rate=0.01,
                                   burst=3))  # fmt: skip
    with TestClient(app) as c:
        codes = [c.get("/api/v1/threshold", headers={"x-api-key": keys["read"]}).status_code
                 for _ in range(5)]  # fmt: skip
        other = c.get("/api/v1/threshold", headers={"x-api-key": keys["admin"]})
        last = c.get("/api/v1/threshold", headers={"x-api-key": keys["read"]})
    assert codes == [200, 200, 200, 429, 429] and other.status_code == 200
    assert int(last.headers["retry-after"]) >= 1


def test_keys_cli_shows_a_key_once_and_stores_only_a_hash(tmp_path, capsys):
    path = tmp_path / "keys.db"
    assert (
        main(
            [
                "keys",
                "create",
                "--name",
                "door",
                "--scope",
                "recognize",
                "--keys",
                str(path),
                "--json",
            ]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    key = created["key"]
    assert key.startswith("cl_") and KeyStore(path).check(key).scope == "recognize"
    assert key.split("_", 2)[2].encode() not in path.read_bytes()
    assert main(["keys", "list", "--keys", str(path), "--json"]) == 0
    listed = capsys.readouterr().out
    assert "door" in listed and key.split("_", 2)[2] not in listed
    assert main(["keys", "revoke", created["id"], "--keys", str(path)]) == 0
    assert KeyStore(path).check(key) is None
    with pytest.raises(SystemExit) as e:
        main(["keys", "create", "--name", "x", "--scope", "root", "--keys", str(path)])
    assert e.value.code == 2
    assert main(["keys", "revoke", "nobody", "--keys", str(path)]) == 2
