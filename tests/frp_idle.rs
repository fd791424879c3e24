//! T6/T7: an idle session survives past frpc's 75 s stream-open deadline and two yamux
//! keepalive rounds; the parked work stream then still carries traffic. (~80 s.)

mod frp_harness;

use std::time::{Duration, Instant};

use frp_harness::*;

#[test]
fn t6_idle_session_survives_80_seconds_and_parked_stream_works() {
    let server = start_server(true);
    let port = pick_remote_port();
    let frpc = Frpc::start(&FrpcOpts::new(
        &server,
        vec![ProxyOpts::tcp("idle", port, tcp_echo())],
    ));
    frpc.wait_log("start proxy success", Duration::from_secs(20));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(80) {
        std::thread::sleep(Duration::from_secs(1));
        let log = frpc.log_text();
        assert!(
            !log.contains("aborted stream open"),
            "un-ACKed stream: frpc log:\n{log}"
        );
        assert!(
            !log.contains("keepalive"),
            "keepalive failure: frpc log:\n{log}"
        );
    }
    let log = frpc.log_text();
    assert_eq!(
        log.matches("login to server success").count(),
        1,
        "frpc reconnected:\n{log}"
    );
    echo_once(port, b"after-idle");
}
