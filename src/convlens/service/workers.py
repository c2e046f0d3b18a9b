"""The encoder's bounded worker pool: N threads, each with its own gallery connection and
the one shared encoder; at most `queue` requests wait for them, the next is told 503 with
Retry-After instead of piling up."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from convlens.service.errors import ApiError


class WorkerPool:
    def __init__(self, open_gallery, workers: int, queue: int):
        self._open_gallery = open_gallery  # () -> Gallery, called once per worker thread
        self._local = threading.local()
        self._galleries = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(workers + queue)
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="convlens-worker")

    def gallery(self):
        """This worker thread's gallery (opened on its first task)."""
        g = getattr(self._local, "gallery", None)
        if g is None:
            g = self._open_gallery()
            self._local.gallery = g
            with self._lock:
                self._galleries.append(g)
        return g

    async def run(self, fn, *args):
        """fn(gallery, *args) on a worker; 503 when every worker is busy and the queue full."""
        if not self._slots.acquire(blocking=False):
            raise ApiError(
                503, "busy", "every worker is busy; try again shortly", {"Retry-After": "1"}
            )

        def task():
            try:
                return fn(self.gallery(), *args)
            finally:
                self._slots.release()

        return await asyncio.wrap_future(self._pool.submit(task))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for g in self._galleries:
                g.close()
            self._galleries.clear()
