"""The web app: a static page and a small JSON API over :class:`~simulator.annotate.service.StudyService`.

Routes (``TOKEN`` is the participant's token from their link; an unknown one gets 404):

* ``GET /``: the page (``static/index.html``); ``GET /app.js``: its script. Nothing else is served:
  no path from a request ever reaches the file system.
* ``GET /api/TOKEN/state``: the participant's state (see :meth:`StudyService.state`).
* ``POST /api/TOKEN/event``: one event as JSON (at most :data:`MAX_BODY` bytes, else 413). A body that
  does not fit the event schema, or an event that cannot be applied now, gets 422 and changes
  nothing; an event that does not follow the last logged one (a stale page) gets 409 with the state.
  A 200 answer means the event is on disk.
"""

from __future__ import annotations

import math
import re
import sys
from importlib import resources
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from .human_session import MAX_STROKE_POINTS
from .service import Conflict, StudyService

__all__ = ["MAX_BODY", "create_app", "serve"]

MAX_BODY = 64 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    seq: int = Field(ge=0)
    task: int = Field(ge=-1)
    t: float  # the page's clock, performance.now() in ms

    @field_validator("t")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError("must be a finite time >= 0")
        return v


Pointer = Literal["mouse", "pen", "touch", "keyboard", "script"]


class Consent(_Event):
    type: Literal["consent"]


class Painted(_Event):
    """The candidates are on screen: ``t`` is the clock every later action of the iteration is timed from."""

    type: Literal["painted"]
    iteration: int = Field(ge=1)
    latency_ms: float = Field(ge=0)  # from the request that brought the candidates to their painting


class Choose(_Event):
    type: Literal["choose"]
    position: int = Field(ge=0)  # 1..K on screen, 0 for none
    pointer: Pointer = "keyboard"


class ClickEvent(_Event):
    type: Literal["click"]
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    positive: bool
    pointer: Pointer = "mouse"


class Stroke(_Event):
    type: Literal["stroke"]
    points: list[Annotated[list[int], Field(min_length=2, max_length=2)]] = Field(min_length=1,
                                                                                  max_length=MAX_STROKE_POINTS)
    positive: bool
    radius: int = Field(ge=0)
    pointer: Pointer = "mouse"


class Plain(_Event):
    type: Literal["undo", "next", "accept"]


EVENT = TypeAdapter(Annotated[Union[Consent, Painted, Choose, ClickEvent, Stroke, Plain], Field(discriminator="type")])


def _static(name: str) -> str:
    return resources.files("simulator.annotate").joinpath("static", name).read_text(encoding="utf-8")


def create_app(service: StudyService) -> FastAPI:
    """The FastAPI app of one study."""
    app = FastAPI(title=f"probseg-annotate: {service.study.name}", docs_url=None, redoc_url=None, openapi_url=None)

    def participant(token: str) -> int:
        pid = service.store.participant(token) if _TOKEN.match(token) else None
        if pid is None:
            raise HTTPException(status_code=404, detail="unknown token")
        return pid

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return _static("index.html")

    @app.get("/app.js")
    def script() -> Response:
        return Response(_static("app.js"), media_type="text/javascript")

    @app.get("/api/{token}/state")
    async def state(token: str) -> dict[str, Any]:
        pid = participant(token)
        return await run_in_threadpool(service.state, pid)

    @app.post("/api/{token}/event")
    async def event(token: str, request: Request) -> Any:
        pid = participant(token)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            raise HTTPException(status_code=413, detail=f"body: at most {MAX_BODY} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise HTTPException(status_code=413, detail=f"body: at most {MAX_BODY} bytes")
        try:
            ev = EVENT.validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ())) or "body"
            raise HTTPException(status_code=422, detail=f"{where}: {first.get('msg', 'invalid')}") from None
        payload = ev.model_dump()
        try:
            return await run_in_threadpool(service.post, pid, payload)
        except Conflict as exc:
            return JSONResponse(status_code=409, content={"detail": str(exc), "state": exc.state})
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    return app


def serve(service: StudyService, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn until interrupted; warn when ``host`` is reachable from other machines."""
    import torch
    import uvicorn

    # One intra-op thread, as the runner's workers: these networks are small, and a pool of threads
    # called from the server's worker threads competes for the same two cores.
    torch.set_num_threads(1)
    if host not in LOCAL_HOSTS:
        print(f"probseg-annotate: warning: serving on {host}: anyone who can reach this machine and holds a link "
              "can take part; the traffic is not encrypted", file=sys.stderr)
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning")
