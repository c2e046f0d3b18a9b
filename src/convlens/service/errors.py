"""Errors as `{"error": {"code", "message"}}` with the status that fits."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from convlens.errors import ConvlensError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers=None) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def from_library(e: ConvlensError, hide: str = "") -> ApiError:
    """A library error as an API error: 404 for someone not in the gallery, 409 for a name
    or photo already taken, 400 for everything else (the input was not usable). `hide`:
    the gallery's path or URL, which a client has no business seeing."""
    text = str(e).replace(f" in the gallery {hide}", "") if hide else str(e)
    text = text.replace(hide, "the gallery") if hide else text
    from convlens.faces.gallery import NoSuchPerson

    if isinstance(e, NoSuchPerson) or "no such gallery" in text:
        return ApiError(404, "not_found", text)
    if "no threshold for encoder" in text:
        return ApiError(409, "uncalibrated", text)
    if "already in the gallery" in text or "already enrolled as" in text:
        return ApiError(409, "conflict", text)
    return ApiError(400, "bad_input", text)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "bad_request",
}


def install(app, hide: str = "") -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError):
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(ConvlensError)
    async def _library(request: Request, e: ConvlensError):
        err = from_library(e, hide)
        return error_response(err.status, err.code, err.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return error_response(400, "bad_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        code = _STATUS_CODES.get(e.status_code, "error")
        return error_response(e.status_code, code, str(e.detail), getattr(e, "headers", None))
