"""What both nc_py_api ExApp peers share: main.py (direct TCP mode) and frp_main.py (HaRP's
FRP mode, unix socket). test-peers.md §2.

Every route except /heartbeat goes through nc_py_api's own AppAPIAuthMiddleware: EX-APP-ID
must equal APP_ID and AUTHORIZATION-APP-API must be base64("<user>:<APP_SECRET>"), else the
middleware answers 401 "Unauthorized". So a 200 from any other endpoint proves that the
headers Lyre injected are accepted by the real library.

Shared endpoints (paths as the ExApp sees them, after Lyre stripped /exapps/<id>):
  GET  /heartbeat  200 {"status": "ok", "headers": [[name, value], ...]} (no auth, as in
                   nc_py_api's set_handlers; headers echoed for the signed-request test)
  WS   <ws_path>   websocket: first sends "user:<user id>", then echoes every text message
Each script adds its own catch-all echo route after these, built from `echo_fields`.
"""
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from nc_py_api.ex_app import AppAPIAuthMiddleware


def header_list(scope):
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])]


def new_app(ws_path):
    """A FastAPI app behind AppAPIAuthMiddleware with /heartbeat and the echo websocket at
    `ws_path` (a FastAPI path pattern, e.g. "/ws" or "/ws{rest:path}")."""
    app = FastAPI()
    app.add_middleware(AppAPIAuthMiddleware)

    @app.get("/heartbeat")
    async def heartbeat(request: Request):
        return JSONResponse({"status": "ok", "headers": header_list(request.scope)})

    @app.websocket(ws_path)
    async def ws(websocket: WebSocket):
        await websocket.accept()
        await websocket.send_text("user:" + websocket.scope.get("username", ""))
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    return app


async def echo_fields(request: Request):
    """Reads the whole body, then returns what the request looked like to the ExApp: the user
    nc_py_api decoded, the method, the raw path and query (latin-1) and every header."""
    scope = request.scope
    await request.body()
    return {
        "user": scope.get("username", ""),
        "method": request.method,
        "raw_path": scope.get("raw_path", b"").decode("latin-1"),
        "query": scope.get("query_string", b"").decode("latin-1"),
        "headers": header_list(scope),
    }
