"""People and their photos: list (paged), enrol, rename, forget; photos list/add/delete;
embeddings enrolled by clients that encode on their side."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Query, Request

from convlens.service import images
from convlens.service.app import check_name, require, service
from convlens.service.errors import ApiError

router = APIRouter(tags=["people"])


def person_json(p) -> dict:
    return {"name": p.name, "photos": p.photos, "created": p.created}


def enroll_json(result, total: int) -> dict:
    return {
        "name": result.name,
        "added": result.added,
        "skipped": len(result.skipped),
        "photos": total,
    }


async def _enroll(request: Request, name: str | None) -> dict:
    svc = service(request)
    fields, files = await images.request_parts(request)
    name = check_name(name if name is not None else fields.get("name"))
    largest = str(fields.get("largest_face", "false")).lower() in ("1", "true", "yes")
    if not files.get("images") and files.get("image"):
        files["images"] = files.pop("image")
    if not files.get("images"):
        raise ApiError(400, "bad_request", "send one or more photos as 'images'")

    def work(g):
        photos = images.images(files, "images", svc.config.max_pixels)
        result = g.enroll(name, photos, largest_face=largest)
        return enroll_json(result, len(g.photos(name)) if result.added else 0)

    return await svc.pool.run(work)


@router.get("/people", dependencies=[require("read")])
async def list_people(
    request: Request,
    page: int = Query(0, ge=0, le=1_000_000),
    size: int = Query(50, ge=1, le=1000),
) -> dict:
    """People in name order, `size` per page, with their photo counts."""

    def work(g):
        people = g.people()
        chunk = people[page * size : (page + 1) * size]
        return {
            "people": [person_json(p) for p in chunk],
            "page": page,
            "size": size,
            "total": len(people),
            "embeddings": len(g),
        }

    return await service(request).pool.run(work)


@router.post("/people", dependencies=[require("enroll")], status_code=201)
async def create_person(request: Request) -> dict:
    """Create a person from their first photos (`name` and `images`): a gallery holds no
    one without an embedding."""
    return await _enroll(request, None)


@router.patch("/people/{name}", dependencies=[require("enroll")])
async def rename_person(name: str, request: Request) -> dict:
    """Rename: JSON {"name": "new name"}."""
    old = check_name(name)
    fields, _ = await images.request_parts(request)
    new = check_name(fields.get("name"))

    def work(g):
        g.rename(old, new)
        return {"name": new, "previous": old}

    return await service(request).pool.run(work)


@router.delete("/people/{name}", dependencies=[require("enroll")])
async def forget_person(name: str, request: Request) -> dict:
    """Forget: the person and every embedding of theirs are erased."""
    name = check_name(name)
    erased = await service(request).pool.run(lambda g: g.forget(name))
    return {"name": name, "erased": erased}


@router.get("/people/{name}/photos", dependencies=[require("read")])
async def list_photos(name: str, request: Request) -> dict:
    name = check_name(name)

    def work(g):
        return {
            "name": name,
            "photos": [
                {"id": p.id, "box": p.box, "created": p.created, "sha256": p.sha256}
                for p in g.photos(name)
            ],
        }

    return await service(request).pool.run(work)


@router.post("/people/{name}/photos", dependencies=[require("enroll")], status_code=201)
async def add_photos(name: str, request: Request) -> dict:
    """Enrol photos (`images`): each must show one face, or send largest_face=true."""
    return await _enroll(request, name)


@router.delete("/people/{name}/photos/{photo_id}", dependencies=[require("enroll")])
async def delete_photo(name: str, photo_id: int, request: Request) -> dict:
    name = check_name(name)
    await service(request).pool.run(lambda g: g.forget_photo(name, photo_id))
    return {"name": name, "erased": photo_id}


def parse_embeddings(fields: dict) -> np.ndarray:
    rows = fields.get("embeddings")
    if not isinstance(rows, list) or not rows or len(rows) > 1000:
        raise ApiError(400, "bad_request", "send 1..1000 embeddings as lists of numbers")
    try:
        vecs = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_request", "embeddings must be lists of numbers") from None
    if vecs.ndim != 2 or not np.isfinite(vecs).all():
        raise ApiError(400, "bad_request", "embeddings must be equal-length finite lists")
    return vecs


def model_id_of(fields: dict) -> str:
    model_id = fields.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise ApiError(400, "bad_request", "name the encoder as model_id (GET /api/v1/model)")
    return model_id


def check_model(g, model_id: str) -> None:
    if model_id != g.encoder_model_id():
        raise ApiError(
            400,
            "wrong_model",
            f"embeddings of encoder {model_id!r}; this service encodes with "
            f"{g.encoder_model_id()!r} (embeddings of different encoders are not comparable)",
        )


@router.post("/people/{name}/embeddings", dependencies=[require("enroll")], status_code=201)
async def add_embeddings(name: str, request: Request) -> dict:
    """Enrol embeddings computed by the client: JSON {"model_id", "embeddings": [[...]]}.
    The gallery refuses another encoder's embeddings."""
    name = check_name(name)
    fields, _ = await images.request_parts(request)
    model_id = model_id_of(fields)
    vecs = parse_embeddings(fields)

    def work(g):
        check_model(g, model_id)
        result = g.enroll_embeddings(name, vecs, model_id=model_id)
        return enroll_json(result, len(g.photos(name)) if result.added else 0)

    return await service(request).pool.run(work)
