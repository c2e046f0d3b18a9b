"""What stands between a client and the routes: body size and slow-body limits, slow-header
connections, per-key rate limits, and one log line per request (never a key or an image).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("convlens.service")


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
# The web page runs only its own files: no inline script, no other origin, no framing.
_PAGE_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        b"object-src 'none'; frame-ancestors 'none'",
    ),
]


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class RequestGuard:
    """ASGI middleware: refuses bodies over `max_body` (by Content-Length, or counted while
    they stream in), gives up on a body whose next piece takes over `body_timeout` seconds,
    adds security headers, and logs method, path, status and time. Plain ASGI on purpose:
    Starlette's BaseHTTPMiddleware would wrap these exceptions in exception groups."""

    def __init__(self, app, max_body: int, body_timeout: float):
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = {"status": None, "received": 0}

        async def send_logged(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                extra = _SECURITY_HEADERS + (
                    _PAGE_HEADERS if scope["path"].startswith("/app") else []
                )
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        async def guarded_receive():
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise BodyTooSlow from None
            state["received"] += len(message.get("body", b""))
            if state["received"] > self.max_body:
                raise BodyTooLarge
            return message

        length = dict(scope["headers"]).get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                raise BodyTooLarge
            await self.app(scope, guarded_receive, send_logged)
        except (BodyTooLarge, BodyTooSlow) as e:
            if state["status"] is not None:
                raise
            too_large = isinstance(e, BodyTooLarge)
            status = 413 if too_large else 408
            message = (
                f"request body over the {self.max_body} byte limit"
                if too_large
                else f"request body not received within {self.body_timeout:g} s"
            )
            await _plain_error(
                send_logged, status, "too_large" if too_large else "timeout", message
            )
        finally:
            ms = (time.perf_counter() - started) * 1000
            # The path names people; never keys (headers) or images (bodies).
            log.info("%s %s %s %.0f ms", scope["method"], scope["path"], state["status"], ms)


async def _plain_error(send, status: int, code: str, message: str) -> None:
    body = _error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol that closes a connection whose request line and headers
    have not all arrived within `header_timeout` seconds (slowloris): uvicorn alone waits
    for them for ever. Checked every `header_timeout` seconds: a connection that never sent
    a request, or holds part of one while no request is being answered, is closed; an idle
    keep-alive connection is left to uvicorn's keep-alive timeout."""

    header_timeout = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._served = False
        self._header_deadline = self.loop.call_later(self.header_timeout, self._check_headers)

    def _check_headers(self) -> None:
        if self.transport.is_closing():
            return
        waiting = self.cycle is None or self.cycle.response_complete
        partial = bool(self.conn.trailing_data[0])
        self._served = self._served or self.cycle is not None
        if waiting and (partial or not self._served):
            self.transport.close()  # nothing useful came in time
            return
        self._header_deadline = self.loop.call_later(self.header_timeout, self._check_headers)

    def connection_lost(self, exc) -> None:
        self._header_deadline.cancel()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float) -> type[H11Protocol]:
    return type("GuardedH11", (GuardedH11Protocol,), {"header_timeout": header_timeout})


class RateLimiter:
    """A token bucket per key: `rate` requests per second, up to `burst` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = float(rate), max(1, int(burst))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[key_id] = (tokens - 1.0, now)
            return 0.0
