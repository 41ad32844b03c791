"""Reading what a client sent: bounded JSON bodies, safe request ids, 4xx answers that name the problem."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def request_id(request: Request) -> str:
    """The client's x-request-id when it is 1-128 of [A-Za-z0-9._:-], else a fresh one."""
    given = request.headers.get("x-request-id", "")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest(400, "request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except RecursionError:  # the C decoder's own depth guard
        raise BadRequest(400, "request body nests too deeply to be a prediction request") from None
    except ValueError as problem:
        raise BadRequest(400, f"request body is not valid JSON: {str(problem)[:200]}") from None


async def read_json_body(request: Request, limit: int) -> tuple[bytes, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"request body is {declared} bytes; the limit is {limit} (--max-body-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"request body exceeds the limit of {limit} bytes (--max-body-bytes)")
        chunks.append(chunk)
    body = b"".join(chunks)
    return body, parse_json(body)
