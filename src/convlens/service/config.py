"""The service's settings, with the defaults `convlens serve` uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_keys_path() -> Path:
    env = os.environ.get("CONVLENS_KEYS")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("convlens")) / "keys.db"


@dataclass
class ServiceConfig:
    """db: a gallery file or a postgresql:// URL. keys: the API key file.

    workers: encoder threads; queue: requests that may wait for one (more: 503).
    max_body: bytes per request (413 beyond); max_pixels: per image, read from its header
    before it is decoded (400 beyond). rate/burst: requests per second per key (token
    bucket; 0 turns it off). header_timeout/body_timeout: seconds a client may take to send
    its request line and headers, and between two pieces of its body (slow clients).
    cors_origins: origins allowed to call from a browser (none by default).
    clip_max_*: a liveness clip's bytes, seconds, frames and pixels per frame, checked from
    its header before decoding (400/413 beyond) and again while it decodes.
    """

    db: str | os.PathLike
    keys: str | os.PathLike = field(default_factory=default_keys_path)
    model: str | None = None
    device: str | None = None
    workers: int = 1
    queue: int = 8
    max_body: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    rate: float = 20.0
    burst: int = 40
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ()
    style_max_size: int = 512
    style_max_steps: int = 500
    clip_max_bytes: int = 8 * 1024 * 1024
    clip_max_seconds: float = 10.0
    clip_max_frames: int = 300
    clip_max_pixels: int = 2_100_000  # 1920x1088
    style_jobs: int = 4  # jobs kept (queued, running or finished) at once
