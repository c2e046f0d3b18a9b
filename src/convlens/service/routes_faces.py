"""Recognition: identify (1:K, every face), verify (1:1), detect, embeddings out and in,
the encoder's id, τ with its provenance, and the calibration report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from convlens.errors import ConvlensError
from convlens.service import images
from convlens.service.app import check_name, require, service
from convlens.service.errors import ApiError
from convlens.service.routes_people import check_model, model_id_of, parse_embeddings

router = APIRouter(tags=["recognition"])
MAX_K = 20


def threshold_json(g) -> dict:
    tau = g.decision_threshold()
    return {"value": tau.value, "scorer": tau.scorer, "provenance": g.threshold_info}


def face_json(match) -> dict:
    """A FaceMatch with the decision spelled out for the face and each candidate."""
    out = match.to_json()
    out["decision"] = "match" if match.name is not None else "unknown"
    for c in out["candidates"]:  # τ None: an uncalibrated gallery names nobody
        c["match"] = match.threshold is not None and c["distance"] <= match.threshold
    return out


def _k(fields: dict) -> int:
    try:
        k = int(fields.get("k", 1))
    except (TypeError, ValueError):
        raise ApiError(400, "bad_request", "k must be a whole number") from None
    if not 1 <= k <= MAX_K:
        raise ApiError(400, "bad_request", f"k must be 1..{MAX_K}")
    return k


@router.post("/identify", dependencies=[require("recognize")])
async def identify(request: Request) -> dict:
    """Every face in `image`: box, the k best candidates with distance and decision, τ."""
    svc = service(request)
    fields, files = await images.request_parts(request)
    k = _k(fields)

    def work(g):
        matches = g.identify(images.one_image(files, "image", svc.config.max_pixels), k=k)
        return {"faces": [face_json(m) for m in matches], "threshold": threshold_json(g)}

    return await svc.pool.run(work)


@router.post("/verify", dependencies=[require("recognize")])
async def verify(request: Request) -> dict:
    """Is the largest face in `image` the person `name`? Or, with `image2` instead of a
    name, do the largest faces of the two photos show the same person?"""
    svc = service(request)
    fields, files = await images.request_parts(request)
    name = fields.get("name")
    if (name is None) == ("image2" not in files):
        raise ApiError(400, "bad_request", "send `name` or `image2`, not both or neither")
    name = check_name(name) if name is not None else None

    def work(g):
        from convlens import faces

        img = images.one_image(files, "image", svc.config.max_pixels)
        if name is not None:
            v = g.verify(img, name)
            return {
                "match": bool(v.match),
                "distance": v.distance,
                "name": v.name,
                "box": list(v.box) if v.box else None,
                "threshold": threshold_json(g),
            }
        other = images.one_image(files, "image2", svc.config.max_pixels)
        a, b = (_largest(faces, g, x, label) for x, label in ((img, "image"), (other, "image2")))
        d, tau = float(faces.distance(a, b)), g.threshold
        if tau is None:
            raise uncalibrated()
        return {
            "match": d <= tau,
            "distance": d,
            "boxes": [list(a.box), list(b.box)],
            "threshold": threshold_json(g),
        }

    return await svc.pool.run(work)


def uncalibrated() -> ApiError:
    return ApiError(
        409,
        "uncalibrated",
        "no threshold for this encoder: calibrate the gallery first (POST /calibration)",
    )


def _largest(faces, g, img, label: str):
    found = faces.encode(img, model=g.encoder, **g.encode_options)
    if not found:
        raise ApiError(400, "no_face", f"{label}: no face found")
    return found[0]


async def _on_image(request: Request, work) -> dict:
    """work(gallery, image) on the worker pool, for the request's one `image` (decoded there:
    decoding is CPU work too)."""
    svc = service(request)
    _, files = await images.request_parts(request)
    return await svc.pool.run(
        lambda g: work(g, images.one_image(files, "image", svc.config.max_pixels))
    )


@router.post("/detect", dependencies=[require("recognize")])
async def detect(request: Request) -> dict:
    """Every face's box, detector score and 5 landmarks (no encoding)."""

    def work(g, img):
        from convlens import faces

        found, _ = faces.face_chips(img, detector=g.encode_options["detector"])
        return {
            "faces": [
                {
                    **f.to_json(embedding=False),
                    "detector": f.detector,
                    "landmarks": np.round(f.landmarks, 1).tolist(),
                }
                for f in found
            ]
        }

    return await _on_image(request, work)


@router.post("/embeddings", dependencies=[require("recognize")])
async def embeddings_out(request: Request) -> dict:
    """Every face in `image` with its embedding, and the encoder's model_id."""

    def work(g, img):
        from convlens import faces

        found = faces.encode(img, model=g.encoder, **g.encode_options)
        return {"model_id": g.encoder_model_id(), "faces": [f.to_json() for f in found]}

    return await _on_image(request, work)


@router.post("/embeddings/identify", dependencies=[require("recognize")])
async def identify_embeddings(request: Request) -> dict:
    """1:K for embeddings computed by the client: JSON {"model_id", "embeddings", "k"}."""
    fields, _ = await images.request_parts(request)
    model_id, vecs, k = model_id_of(fields), parse_embeddings(fields), _k(fields)

    def work(g):
        check_model(g, model_id)
        if g.dim is None:  # empty gallery: nobody to find
            return {"faces": [], "threshold": threshold_json(g)}
        matches = g.identify_embeddings(vecs, k=k)
        return {"faces": [face_json(m) for m in matches], "threshold": threshold_json(g)}

    return await service(request).pool.run(work)


@router.get("/model", dependencies=[require("read")])
async def model(request: Request) -> dict:
    """The encoder this service uses (embeddings sent in must come from it)."""

    def work(g):
        return {"model_id": g.encoder_model_id(), "gallery_model_id": g.model_id, "dim": g.dim}

    return await service(request).pool.run(work)


@router.get("/threshold", dependencies=[require("read")])
async def threshold(request: Request) -> dict:
    return await service(request).pool.run(threshold_json)


def _gallery_data(g):
    """The gallery's own embeddings as calibrate's labelled data (409 when too few)."""
    from convlens.faces.calibrate import LabelledEmbeddings

    vecs, labels = g.labelled_embeddings()
    if len(set(labels.tolist())) < 2 or len(labels) == len(set(labels.tolist())):
        raise ApiError(
            409, "not_enough_data", "calibration needs two people and someone with two photos"
        )
    return LabelledEmbeddings(vecs, labels, [], g.encoder_model_id())


def _gallery_scores(g):
    from convlens.faces import calibrate

    data = _gallery_data(g)
    d, same = calibrate.pair_scores(data.embeddings, data.labels)
    return d, same, len(data.labels), len(set(data.labels.tolist()))


def _report(g, far: float | None = None, fpir: float | None = None) -> tuple[dict, int, int]:
    """calibrate's report on the gallery's own embeddings, as `convlens faces calibrate`
    prints it: pairs (EER, TAR at each FAR) and the one-shot open set (DIR at each FPIR;
    null, with the reason, when the gallery cannot be split into enrolled and strangers)."""
    from convlens.faces import calibrate

    data = _gallery_data(g)
    d, same = calibrate.pair_scores(data.embeddings, data.labels)
    report = calibrate.calibration_report(d, same, (*calibrate.FARS, *([far] if far else [])))
    try:
        fpirs = (*calibrate.FPIRS, *([fpir] if fpir else []))
        report["open_set"] = calibrate.open_set(data, fpirs)
    except ConvlensError as e:
        if fpir is not None:
            raise
        report["open_set"], report["open_set_note"] = None, str(e)
    return report, len(data.labels), len(set(data.labels.tolist()))


@router.get("/calibration", dependencies=[require("read")])
async def calibration(request: Request) -> dict:
    """EER, best accuracy and TAR at FAR 1e-2/1e-3/1e-4 over every pair of the gallery's own
    embeddings, and the one-shot open-set DIR at FPIR 1e-2/1e-3 (half the people enrolled
    from one photo, the rest strangers), beside the τ in use and its provenance."""

    def work(g):
        report, n, people = _report(g)
        return {"report": report, "photos": n, "people": people, "threshold": threshold_json(g)}

    return await service(request).pool.run(work)


@router.get("/calibration/plot.png", dependencies=[require("read")])
async def calibration_plot(request: Request) -> Response:
    """The ROC and DET curves of the same pairs, as a PNG."""

    def work(g):
        from convlens import metrics

        d, same, _, _ = _gallery_scores(g)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "roc.png"
            metrics.plot_roc({"Euclidean distance": (d, same)}, path)
            return path.read_bytes()

    return Response(await service(request).pool.run(work), media_type="image/png")


def _rate(fields: dict) -> tuple[str, float]:
    """("far" | "fpir", value) from {"far": 0.01} or {"fpir": 0.01}."""
    given = [k for k in ("far", "fpir") if fields.get(k) is not None]
    if len(given) != 1:
        raise ApiError(400, "bad_request", 'send one of far or fpir, such as {"far": 0.01}')
    try:
        value = float(fields[given[0]])
    except (TypeError, ValueError):
        raise ApiError(400, "bad_request", f"{given[0]} must be a number such as 0.01") from None
    if not 0 < value < 1:
        raise ApiError(400, "bad_request", f"{given[0]} must be in (0, 1)")
    return given[0], value


@router.post("/calibration", dependencies=[require("admin")])
async def set_threshold(request: Request) -> dict:
    """Store τ for a target FAR ({"far": 0.01}, read off the gallery's own pairs) or FPIR
    ({"fpir": 0.01}, off its one-shot open set), with its provenance."""
    fields, _ = await images.request_parts(request)
    kind, rate = _rate(fields)

    def work(g):
        from convlens.faces import calibrate

        report, n, people = _report(g, **{kind: rate})
        info = {
            "source": f"calibrated on the gallery ({n} photos, {people} people) via the service",
            "model_id": g.encoder_model_id(),
            "genuine_pairs": report["genuine_pairs"],
            "impostor_pairs": report["impostor_pairs"],
        }
        if kind == "far":
            tau = calibrate.choose_threshold(report, rate)
            info.update(far=rate, tar=report["tar_at_far"][f"{rate:g}"]["tar"])
        else:
            o = report["open_set"]
            tau = calibrate.choose_open_set_threshold(o, rate)
            info.update(fpir=rate, dir=o["at_fpir"][f"{rate:g}"]["dir"])
            info.update(protocol="one-shot open set", enrolled=o["enrolled"])
            info.update(non_mated_probes=o["non_mated_probes"])
        g.set_threshold(tau, info)
        return threshold_json(g)

    return await service(request).pool.run(work)
