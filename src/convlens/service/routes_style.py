"""Style transfer jobs: POST starts one (202 with its id), GET its status, its progress as
server-sent events, the PNG when done; DELETE cancels."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from convlens.service import images
from convlens.service.app import require, service
from convlens.service.errors import ApiError
from convlens.service.jobs import FINISHED
from convlens.service.keys import ApiKey

router = APIRouter(tags=["style"])
RecognizeKey = Annotated[ApiKey, require("recognize")]


def _int_field(fields: dict, name: str, default: int, hi: int, lo: int = 1) -> int:
    try:
        value = int(fields.get(name, default))
    except (TypeError, ValueError):
        raise ApiError(400, "bad_request", f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_request", f"{name} must be {lo}..{hi} on this service")
    return value


@router.post("/style/jobs", status_code=202)
async def start(request: Request, key: RecognizeKey) -> dict:
    """Start a transfer: `content` and `style` images, `size` (long side) and `steps`."""
    svc = service(request)
    fields, files = await images.request_parts(request)
    cfg = svc.config
    options = {
        "size": _int_field(fields, "size", min(256, cfg.style_max_size), cfg.style_max_size, 64),
        "steps": _int_field(fields, "steps", min(100, cfg.style_max_steps), cfg.style_max_steps),
    }
    content = images.one_image(files, "content", cfg.max_pixels)
    style = images.one_image(files, "style", cfg.max_pixels)
    job = svc.jobs.submit(key.id, content, style, options)
    return job.to_json()


@router.get("/style/jobs/{job_id}")
async def status(job_id: str, request: Request, key: RecognizeKey) -> dict:
    return service(request).jobs.get(job_id, key.id).to_json()


@router.get("/style/jobs/{job_id}/events")
async def events(job_id: str, request: Request, key: RecognizeKey):
    """Server-sent events: `progress` (step, steps, seconds) as the optimiser goes, then
    one `end` with the final status."""
    job = service(request).jobs.get(job_id, key.id)

    async def stream():
        sent = 0
        while True:
            new = job.events[sent:]
            sent += len(new)
            for e in new[-1:]:  # the latest is enough for a progress bar
                yield f"event: progress\ndata: {json.dumps(e)}\n\n"
            if job.status in FINISHED:
                yield f"event: end\ndata: {json.dumps(job.to_json())}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"cache-control": "no-store"}
    )


@router.get("/style/jobs/{job_id}/result")
async def result(job_id: str, request: Request, key: RecognizeKey):
    job = service(request).jobs.get(job_id, key.id)
    if job.status != "done":
        raise ApiError(409, "not_ready", f"job is {job.status}, no result")
    headers = {"content-disposition": f'attachment; filename="style-{job.id}.png"'}
    return Response(job.result, media_type="image/png", headers=headers)


@router.delete("/style/jobs/{job_id}")
async def cancel(job_id: str, request: Request, key: RecognizeKey) -> dict:
    svc = service(request)
    job = svc.jobs.get(job_id, key.id)
    svc.jobs.cancel(job)
    return job.to_json()
