"""A minimal nc_py_api ExApp in HaRP's FRP mode, for Lyre's whole-appliance FRP tests
(tests/appliance_frp*.rs; test-peers.md §2, harp-compat.md §5.4).

Run with the venv from tests/peers/install.sh:
    env APP_ID=frpapp APP_VERSION=1.0.0 APP_SECRET=s3cret NEXTCLOUD_URL=http://127.0.0.1:9 \
        APP_PORT=23xxx HP_SHARED_KEY=<key> HP_EXAPP_SOCK=/tmp/x/exapp.sock \
        .peers/venv/bin/python tests/peers/exapp_frp/main.py
HP_SHARED_KEY must be set: nc_py_api's run_app then listens on the unix socket HP_EXAPP_SOCK
(what frpc's `unix_domain_socket` plugin dials), exactly as an ExApp image behind HaRP does.

Every route except /heartbeat goes through nc_py_api's own AppAPIAuthMiddleware (EX-APP-ID
must equal APP_ID, AUTHORIZATION-APP-API must be base64("<user>:<APP_SECRET>"), else 401
"Unauthorized"), so a 200 from any other endpoint proves the real library accepted the
headers Lyre injected.

Endpoints (paths as the ExApp sees them, after Lyre stripped /exapps/<id>):
  GET /heartbeat   200 {"status": "ok", "headers": [[name, value], ...]} (no auth)
  WS  /ws          sends "user:<user id>", then echoes every text message
  ANY other        200 {"user", "method", "raw_path", "query", "headers", "sock"}
"""
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from nc_py_api.ex_app import AppAPIAuthMiddleware, run_app

APP = FastAPI()
APP.add_middleware(AppAPIAuthMiddleware)


def header_list(scope):
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])]


@APP.get("/heartbeat")
async def heartbeat(request: Request):
    return JSONResponse({"status": "ok", "headers": header_list(request.scope)})


@APP.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("user:" + websocket.scope.get("username", ""))
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@APP.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
async def echo(request: Request, rest: str):
    scope = request.scope
    await request.body()
    return JSONResponse(
        {
            "user": scope.get("username", ""),
            "method": request.method,
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": header_list(scope),
            "sock": os.environ.get("HP_EXAPP_SOCK", ""),
        }
    )


if __name__ == "__main__":
    if not os.environ.get("HP_SHARED_KEY"):
        raise SystemExit("HP_SHARED_KEY must be set: FRP mode listens on HP_EXAPP_SOCK")
    print("READY", flush=True)
    run_app(APP, log_level="warning")
