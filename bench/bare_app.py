"""The floor for HTTP figures: a bare Starlette route returning a small JSON, served with the
same uvicorn settings as the service (``uvicorn bench.bare_app:app``)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/", ok, methods=["GET", "POST"])])
