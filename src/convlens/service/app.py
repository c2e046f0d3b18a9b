"""The FastAPI application: `create_app(ServiceConfig) -> FastAPI`.

Every route is a thin shell over convlens.faces / convlens.style: requests are parsed and
checked here, the work runs on the bounded worker pool (workers.py) against the library's
Gallery, and answers are the library's results as JSON.
"""

from __future__ import annotations

import contextlib
import math
import threading
import unicodedata
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from convlens.service import errors
from convlens.service.config import ServiceConfig
from convlens.service.errors import ApiError
from convlens.service.guard import RateLimiter, RequestGuard
from convlens.service.keys import ApiKey, KeyStore
from convlens.service.workers import WorkerPool

STATIC = Path(__file__).with_name("static")
MAX_NAME = 100
API_VERSION = "1"


class Service:
    """What the routes share: settings, keys, rate limits, the worker pool, style jobs."""

    def __init__(self, config: ServiceConfig):
        from convlens.service.jobs import StyleJobs

        self.config = config
        self.keys = KeyStore(config.keys)
        self.limiter = RateLimiter(config.rate, config.burst)
        self._encoder = None
        self._encoder_lock = threading.Lock()
        self.pool = WorkerPool(self.open_gallery, config.workers, config.queue)
        self.jobs = StyleJobs(config)

    def encoder(self):
        """The one face encoder every worker shares (loaded on first use)."""
        with self._encoder_lock:
            if self._encoder is None:
                from convlens import faces

                self._encoder = faces.resolve_model(self.config.model, self.config.device)
            return self._encoder

    def open_gallery(self):
        from convlens.faces import Gallery

        return Gallery(self.config.db, encoder=self.encoder(), device=self.config.device)

    def close(self) -> None:
        self.jobs.close()
        self.pool.close()


def service(request: Request) -> Service:
    return request.app.state.service


def require(scope: str):
    """A dependency: the request's live API key, allowed `scope`, within its rate limit."""

    async def check(request: Request) -> ApiKey:
        svc = service(request)
        presented = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if presented is None and auth.lower().startswith("bearer "):
            presented = auth[7:].strip()
        key = await run_in_threadpool(svc.keys.check, presented)
        if key is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing, unknown or revoked API key (send it as x-api-key)",
                {"WWW-Authenticate": "ApiKey"},
            )
        if not key.allows(scope):
            raise ApiError(403, "forbidden", f"this key's scope is {key.scope}; needs {scope}")
        wait = svc.limiter.take(key.id)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"over {svc.config.rate:g} requests per second for this key",
                {"Retry-After": str(math.ceil(wait))},
            )
        return key

    return Depends(check)


def check_name(name) -> str:
    """A person's name as the service accepts it: 1..100 printable characters, no path
    separators or control characters (names appear in URLs and file names). Quotes and
    anything else are stored verbatim: the gallery binds every value as a parameter."""
    if not isinstance(name, str):
        raise ApiError(400, "bad_name", "a name must be a string")
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise ApiError(400, "bad_name", f"a name must have 1..{MAX_NAME} characters")
    if name in (".", "..") or any(c in name for c in "/\\"):
        raise ApiError(400, "bad_name", "a name cannot contain / or \\ or be . or ..")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise ApiError(400, "bad_name", "a name cannot contain control characters")
    return name


def create_app(config: ServiceConfig) -> FastAPI:
    """The service over `config.db`; routes under /api/v1, the page under /app/."""
    from convlens.service import routes_faces, routes_people, routes_style, routes_video

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.service.close()

    # FastAPIOffline: FastAPI whose /docs (Swagger UI) loads its script and styles from this
    # process (/docs-assets), not from a CDN: it works offline. No /redoc: ReDoc's script
    # still fetches its logo from Redocly's CDN.
    app = FastAPIOffline(
        static_url="/docs-assets",
        redoc_url=None,
        title="convlens",
        version=API_VERSION,
        description="Face verification and recognition, and neural style transfer, over HTTP. "
        "Send an API key as `x-api-key` (`convlens keys create`).",
        lifespan=lifespan,
    )
    app.state.service = Service(config)
    errors.install(app, hide=str(config.db))
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["x-api-key", "authorization", "content-type"],
        )
    app.add_middleware(RequestGuard, max_body=config.max_body, body_timeout=config.body_timeout)
    for module in (routes_people, routes_faces, routes_video, routes_style):
        app.include_router(module.router, prefix="/api/v1")

    @app.get("/health", tags=["service"])
    async def health() -> dict:
        return {"status": "ok", "version": API_VERSION}

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/app/")

    app.mount("/app", StaticFiles(directory=STATIC, html=True), name="app")
    return app
