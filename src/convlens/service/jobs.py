"""Style transfer as jobs: one runs at a time on its own thread (it uses every core), at
most `style_jobs` are kept; progress comes from convlens.style's callback, cancelling
raises from inside that callback so the optimiser stops at the next step."""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from convlens.errors import ConvlensError
from convlens.service.errors import ApiError

FINISHED = ("done", "failed", "cancelled")


class Cancelled(Exception):
    pass


@dataclass
class Job:
    id: str
    owner: str  # the API key id that started it; other keys do not see it
    options: dict
    status: str = "queued"
    events: list[dict] = field(default_factory=list)
    result: bytes | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        last = self.events[-1] if self.events else None
        return {
            "id": self.id,
            "status": self.status,
            "progress": last,
            "error": self.error,
            "options": self.options,
        }


class StyleJobs:
    def __init__(self, config):
        self.limit = config.style_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="convlens-style")

    def submit(self, owner: str, content, style, options: dict) -> Job:
        with self._lock:
            if len(self._jobs) >= self.limit:
                done = [j for j in self._jobs.values() if j.status in FINISHED]
                if not done:
                    raise ApiError(
                        503, "busy", "too many style jobs; try later", {"Retry-After": "30"}
                    )
                del self._jobs[done[0].id]  # the oldest finished one
            job = Job(secrets.token_urlsafe(12), owner, options)
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, content, style)
        return job

    def get(self, job_id: str, owner: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise ApiError(404, "not_found", f"no style job {job_id!r}")
        return job

    def cancel(self, job: Job) -> None:
        job.cancel.set()
        if job.status == "queued":
            job.status = "cancelled"

    def _run(self, job: Job, content, style) -> None:
        from convlens.style import StepEvent, transfer

        if job.cancel.is_set():
            return
        job.status = "running"
        started = time.perf_counter()

        def on_event(event) -> None:
            if job.cancel.is_set():
                raise Cancelled
            if isinstance(event, StepEvent):
                done = event.scale * event.steps + event.step + 1
                job.events.append(
                    {
                        "step": done,
                        "steps": event.steps * event.scales,
                        "seconds": round(time.perf_counter() - started, 2),
                    }
                )

        try:
            image = transfer(content, style, callback=on_event, **job.options)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            job.result = buf.getvalue()
            job.status = "done"
        except Cancelled:
            job.status = "cancelled"
        except ConvlensError as e:
            job.error, job.status = str(e), "failed"
        except Exception as e:  # a job must never take the service down
            job.error, job.status = f"style transfer failed ({type(e).__name__})", "failed"

    def close(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
