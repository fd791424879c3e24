"""A minimal nc_py_api ExApp for Lyre's ExApp-routing tests (test-peers.md §2).

Run with the venv from tests/peers/install.sh:
    env APP_ID=testapp APP_VERSION=1.0.0 APP_SECRET=s3cret NEXTCLOUD_URL=http://127.0.0.1:9 \
        APP_HOST=127.0.0.1 APP_PORT=<port> .peers/venv/bin/python tests/peers/exapp/main.py
HP_SHARED_KEY must be unset or empty: nc_py_api then listens on TCP APP_HOST:APP_PORT
(direct mode) instead of the unix socket used behind FRP.

Every route except /heartbeat goes through nc_py_api's own AppAPIAuthMiddleware: EX-APP-ID
must equal APP_ID and AUTHORIZATION-APP-API must be base64("<user>:<APP_SECRET>"), else the
middleware answers 401 "Unauthorized". So a 200 from any endpoint below proves that the
headers Lyre injected are accepted by the real library.

Endpoints (paths as the ExApp sees them, i.e. after Lyre stripped /exapps/<id>):
  GET  /heartbeat        200 {"status": "ok", "headers": [[name, value], ...]} (no auth, as
                         in nc_py_api's set_handlers; headers echoed for the signed-request test)
  ANY  /status/<code>... answers <code> with body "status <code>" (brute-force tests); the
                         path may be prefixed by anything, e.g. /bf/status/401
  WS   /ws...            websocket: first sends "user:<user id>", then echoes every text message
  ANY  anything else     200 JSON {"user": <user id decoded by nc_py_api>, "method",
                         "raw_path", "query" (raw query string, latin-1), "headers"}
"""
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse
from nc_py_api.ex_app import AppAPIAuthMiddleware, run_app

APP = FastAPI()
APP.add_middleware(AppAPIAuthMiddleware)


def header_list(scope):
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])]


@APP.get("/heartbeat")
async def heartbeat(request: Request):
    return JSONResponse({"status": "ok", "headers": header_list(request.scope)})


@APP.websocket("/ws{rest:path}")
async def ws(websocket: WebSocket, rest: str):
    await websocket.accept()
    await websocket.send_text("user:" + websocket.scope.get("username", ""))
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@APP.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def echo(request: Request, rest: str):
    scope = request.scope
    marker = "status/"
    if marker in rest:
        code = rest.split(marker, 1)[1].split("/", 1)[0]
        if code.isdigit() and 200 <= int(code) <= 599:
            return PlainTextResponse(f"status {code}", status_code=int(code))
    await request.body()
    return JSONResponse(
        {
            "user": scope.get("username", ""),
            "method": request.method,
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": header_list(scope),
        }
    )


if __name__ == "__main__":
    if os.environ.get("HP_SHARED_KEY"):
        raise SystemExit("HP_SHARED_KEY must be empty: the tests need the TCP (direct) mode")
    run_app(APP, log_level="warning")
