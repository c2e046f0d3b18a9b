"""Images from requests: multipart uploads or base64 in JSON, checked before decoding.

The pixel limit is read from the image header (Pillow opens lazily), so a decompression
bomb (a few kilobytes that would decode to gigabytes) is refused before any pixel exists.
Decoding itself is convlens.images.load_image (EXIF orientation, any mode to RGB).
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from fastapi import Request, UploadFile
from PIL import Image, UnidentifiedImageError

from convlens.errors import ConvlensError
from convlens.images import load_image
from convlens.service.errors import ApiError
from convlens.service.guard import BodyTooLarge, BodyTooSlow

MAX_IMAGES = 20  # per request


def decode(data: bytes, max_pixels: int, label: str = "image") -> np.ndarray:
    """RGB uint8 array of an encoded image; ApiError 400 for anything unusable."""
    if not data:
        raise ApiError(400, "bad_image", f"{label}: empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise ApiError(
                400,
                "too_many_pixels",
                f"{label}: {w}x{h} pixels, over the {max_pixels} pixel limit",
            )
        img.load()
        return load_image(img)
    except ApiError:
        raise
    except ConvlensError as e:
        raise ApiError(400, "bad_image", f"{label}: {e}") from None
    except Image.DecompressionBombError:
        raise ApiError(400, "too_many_pixels", f"{label}: too many pixels") from None
    except UnidentifiedImageError:
        raise ApiError(400, "bad_image", f"{label}: not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, MemoryError) as e:
        raise ApiError(400, "bad_image", f"{label}: cannot decode ({type(e).__name__})") from None


def from_base64(text: str, label: str) -> bytes:
    if not isinstance(text, str):
        raise ApiError(400, "bad_image", f"{label}: expected a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]  # a data: URL from a browser
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_image", f"{label}: not valid base64") from None


async def request_parts(request: Request) -> tuple[dict, dict[str, list[bytes]]]:
    """(fields, files) of a multipart form or a JSON object.

    In JSON, images are base64 strings under "image"/"image2"/"style" (a clip under "video")
    or lists under "images"; in a form, files under the same names (several "images" files
    allowed).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "bad_request", "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "body must be a JSON object")
        files: dict[str, list[bytes]] = {}
        for name in ("image", "image2", "content", "style", "images", "video"):
            value = body.pop(name, None)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            files[name] = [from_base64(v, name) for v in values[: MAX_IMAGES + 1]]
        return body, files
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=MAX_IMAGES + 1, max_fields=50)
        except (ApiError, BodyTooLarge, BodyTooSlow):
            raise
        except Exception:  # python-multipart's and Starlette's parse errors share no base
            raise ApiError(400, "bad_multipart", "malformed multipart body") from None
        fields, files = {}, {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile) or hasattr(value, "read"):
                files.setdefault(key, []).append(await value.read())
            else:
                fields[key] = value
        return fields, files
    raise ApiError(
        415 if kind else 400,
        "unsupported_media_type",
        "send multipart/form-data or application/json",
    )


def images(files: dict[str, list[bytes]], key: str, max_pixels: int) -> list[np.ndarray]:
    found = files.get(key, [])
    if len(found) > MAX_IMAGES:
        raise ApiError(400, "too_many_images", f"at most {MAX_IMAGES} images per request")
    return [decode(b, max_pixels, f"{key}[{i}]") for i, b in enumerate(found)]


def one_image(files: dict[str, list[bytes]], key: str, max_pixels: int) -> np.ndarray:
    found = files.get(key, [])
    if len(found) != 1:
        raise ApiError(400, "bad_request", f"send exactly one image as {key!r}")
    return decode(found[0], max_pixels, key)
