//! WebSocket to a real nc_py_api ExApp through nginx -> `lyre serve` (harp-compat.md §6.1,
//! §3.7): the upgrade goes through the same decision as any request (USER route, session
//! cookie validated), nc_py_api's middleware accepts the injected headers on the upgrade,
//! and the tunnel outlives HP_TIMEOUT_CLIENT while idle (H-60's regression).

mod common;

use std::time::Duration;

use common::exapp::*;
use common::ws::WsClient;
use common::Nginx;

#[test]
fn websocket_through_nginx_to_nc_py_api() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(
        &nc,
        &[
            ("HP_TRUSTED_PROXY_IPS", "127.0.0.1"),
            ("HP_TIMEOUT_CLIENT", "1s"),
        ],
    );
    let nginx = Nginx::start(lyre.port);
    let alice = session_cookie(ALICE_COOKIE);

    let mut ws = WsClient::try_connect_with(
        nginx.port,
        "/exapps/testapp/ws/chat?room=1",
        &[("Cookie", &alice)],
    );
    assert_eq!(
        ws.handshake.status,
        101,
        "upgrade: {}",
        String::from_utf8_lossy(&ws.handshake.raw)
    );
    let hello = ws.recv().expect("greeting from the ExApp");
    assert_eq!(
        String::from_utf8_lossy(&hello.payload),
        "user:alice",
        "nc_py_api decoded the user from the injected AUTHORIZATION-APP-API"
    );
    ws.assert_echo("first message");
    // Idle for longer than HP_TIMEOUT_CLIENT: the tunnel must stay open.
    std::thread::sleep(Duration::from_millis(2500));
    ws.assert_echo("after idling past the client timeout");
    ws.assert_echo(&"x".repeat(70_000));
    ws.close();
    assert_eq!(
        nc.user_calls(APP_ID),
        1,
        "one session check for the upgrade"
    );

    // Without a session the USER route refuses the upgrade with HaRP's page.
    let ws = WsClient::try_connect_with(nginx.port, "/exapps/testapp/ws/chat", &[]);
    assert_eq!(ws.handshake.status, 403, "upgrade without a session");
}
