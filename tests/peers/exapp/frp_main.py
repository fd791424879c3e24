"""A minimal nc_py_api ExApp in HaRP's FRP mode, for Lyre's whole-appliance FRP tests
(tests/appliance_frp*.rs; test-peers.md §2, harp-compat.md §5.4).

Run with the venv from tests/peers/install.sh:
    env APP_ID=frpapp APP_VERSION=1.0.0 APP_SECRET=s3cret NEXTCLOUD_URL=http://127.0.0.1:9 \
        APP_PORT=23xxx HP_SHARED_KEY=<key> HP_EXAPP_SOCK=/tmp/x/exapp.sock \
        .peers/venv/bin/python tests/peers/exapp/frp_main.py
HP_SHARED_KEY must be set: nc_py_api's run_app then listens on the unix socket HP_EXAPP_SOCK
(what frpc's `unix_domain_socket` plugin dials), exactly as an ExApp image behind HaRP does.

Authentication and the shared endpoints: see exapp_base.py. Endpoints (paths as the ExApp
sees them, after Lyre stripped /exapps/<id>):
  GET /heartbeat   200 {"status": "ok", "headers": [[name, value], ...]} (no auth)
  WS  /ws          sends "user:<user id>", then echoes every text message
  ANY other        200 {"user", "method", "raw_path", "query", "headers", "sock"}
"""
import os

from fastapi import Request
from fastapi.responses import JSONResponse
from nc_py_api.ex_app import run_app

from exapp_base import echo_fields, new_app

APP = new_app("/ws")


@APP.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
async def echo(request: Request, rest: str):
    fields = await echo_fields(request)
    fields["sock"] = os.environ.get("HP_EXAPP_SOCK", "")
    return JSONResponse(fields)


if __name__ == "__main__":
    if not os.environ.get("HP_SHARED_KEY"):
        raise SystemExit("HP_SHARED_KEY must be set: FRP mode listens on HP_EXAPP_SOCK")
    print("READY", flush=True)
    run_app(APP, log_level="warning")
