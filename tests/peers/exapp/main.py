"""A minimal nc_py_api ExApp for Lyre's ExApp-routing tests (test-peers.md §2).

Run with the venv from tests/peers/install.sh:
    env APP_ID=testapp APP_VERSION=1.0.0 APP_SECRET=s3cret NEXTCLOUD_URL=http://127.0.0.1:9 \
        APP_HOST=127.0.0.1 APP_PORT=<port> .peers/venv/bin/python tests/peers/exapp/main.py
HP_SHARED_KEY must be unset or empty: nc_py_api then listens on TCP APP_HOST:APP_PORT
(direct mode) instead of the unix socket used behind FRP (that is frp_main.py).

Authentication and the shared endpoints: see exapp_base.py. Endpoints (paths as the ExApp
sees them, i.e. after Lyre stripped /exapps/<id>):
  GET  /heartbeat        200 {"status": "ok", "headers": [[name, value], ...]} (no auth)
  ANY  /status/<code>... answers <code> with body "status <code>" (brute-force tests); the
                         path may be prefixed by anything, e.g. /bf/status/401
  WS   /ws...            websocket: first sends "user:<user id>", then echoes every text message
  ANY  anything else     200 JSON {"user": <user id decoded by nc_py_api>, "method",
                         "raw_path", "query" (raw query string, latin-1), "headers"}
"""
import os

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse
from nc_py_api.ex_app import run_app

from exapp_base import echo_fields, new_app

APP = new_app("/ws{rest:path}")


@APP.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def echo(request: Request, rest: str):
    marker = "status/"
    if marker in rest:
        code = rest.split(marker, 1)[1].split("/", 1)[0]
        if code.isdigit() and 200 <= int(code) <= 599:
            return PlainTextResponse(f"status {code}", status_code=int(code))
    return JSONResponse(await echo_fields(request))


if __name__ == "__main__":
    if os.environ.get("HP_SHARED_KEY"):
        raise SystemExit("HP_SHARED_KEY must be empty: the tests need the TCP (direct) mode")
    run_app(APP, log_level="warning")
