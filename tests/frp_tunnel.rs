//! Lyre's FRP server against the REAL frpc 0.65 (frp-protocol.md §10 test plan).
//! Needs frpc: tests/peers/install_frp.sh (or LYRE_FRPC=/path/to/frpc).

mod common;
mod frp_harness;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::pattern::HashSink;
use common::Pattern;
use frp_harness::*;

fn echo_case(tls: bool, tcp_mux: bool, custom_first_byte: bool) {
    let server = start_server(tls);
    let backend = tcp_echo();
    let port = pick_remote_port();
    let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("echo", port, backend)]);
    opts.tcp_mux = tcp_mux;
    opts.disable_custom_first_byte = !custom_first_byte;
    let frpc = Frpc::start(&opts);
    frpc.wait_log("login to server success", Duration::from_secs(20));
    wait_tunnel_echo(&frpc, port);
    // T4: sequential connections reuse and refill the pool.
    for i in 0..20 {
        echo_once(port, format!("seq-{i}").as_bytes());
    }
}

#[test]
fn t11_tls_mtls_default_client_hello() {
    echo_case(true, true, false);
}

#[test]
fn t12_tls_with_custom_first_byte_0x17() {
    echo_case(true, true, true);
}

#[test]
fn t1_plaintext_mux() {
    echo_case(false, true, false);
}

/// HP_FRP_DISABLE_TLS=true is frps with `transport.tls.force = false`: an frpc that keeps
/// TLS on (its default) without a CA still connects, over a throw-away certificate, with
/// either first byte, mux or not; plaintext clients are served alongside (harp-compat
/// §2.5, frp-protocol §1.3-1.4).
#[test]
fn tls_clients_are_served_when_tls_is_disabled() {
    let server = start_server(false);
    for (tcp_mux, custom_first_byte) in [(true, false), (true, true), (false, false)] {
        let backend = tcp_echo();
        let port = pick_remote_port();
        let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("tls-on", port, backend)]);
        opts.unverified_tls = true;
        opts.tcp_mux = tcp_mux;
        opts.disable_custom_first_byte = !custom_first_byte;
        let frpc = Frpc::start(&opts);
        frpc.wait_log("login to server success", Duration::from_secs(20));
        wait_tunnel_echo(&frpc, port);
        for i in 0..5 {
            echo_once(
                port,
                format!("tls-{tcp_mux}-{custom_first_byte}-{i}").as_bytes(),
            );
        }
    }
    let plain_port = pick_remote_port();
    let plain = Frpc::start(&FrpcOpts::new(
        &server,
        vec![ProxyOpts::tcp("plain", plain_port, tcp_echo())],
    ));
    wait_tunnel_echo(&plain, plain_port);
}

/// `transport.poolCount = 0`: no work connection is asked for at login (frps sends
/// min(pool_count, 5) ReqWorkConn); each user connection asks for its own, with and
/// without mux.
#[test]
fn pool_count_zero_is_served_on_demand() {
    let server = start_server(false);
    for tcp_mux in [true, false] {
        let port = pick_remote_port();
        let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("nopool", port, tcp_echo())]);
        opts.tcp_mux = tcp_mux;
        opts.extra = "transport.poolCount = 0\n".into();
        let frpc = Frpc::start(&opts);
        wait_tunnel_echo(&frpc, port);
        for i in 0..5 {
            echo_once(port, format!("nopool-{tcp_mux}-{i}").as_bytes());
        }
    }
}

#[test]
fn t14_plaintext_without_mux() {
    echo_case(false, false, false);
}

#[test]
fn t14_tls_without_mux() {
    echo_case(true, false, false);
}

/// harp-compat §5.4: exactly what ExApp images write to /frpc.toml (TLS on because
/// /certs/frp exists), with the app listening on a unix socket.
#[test]
fn harp_exapp_frpc_config_with_unix_socket_plugin() {
    let server = start_server(true);
    let pki = server.pki.clone().unwrap();
    let dir = temp_dir("exapp");
    let sock = dir.join("exapp.sock");
    unix_echo(&sock);
    let port = pick_remote_port();
    let log = dir.join("frpc.log");
    let toml = format!(
        r#"serverAddr = "127.0.0.1"
serverPort = {server_port}
loginFailExit = false

transport.tls.enable = true
transport.tls.certFile = "{crt}"
transport.tls.keyFile = "{key}"
transport.tls.trustedCaFile = "{ca}"
transport.tls.serverName = "harp.nc"

metadatas.token = "{token}"

log.to = "{log}"
log.disablePrintColor = true

[[proxies]]
remotePort = {port}
type = "tcp"
name = "test-exapp"
[proxies.plugin]
type = "unix_domain_socket"
unixPath = "{sock}"
"#,
        server_port = server.port,
        crt = pki.client_crt.display(),
        key = pki.client_key.display(),
        ca = pki.ca_crt.display(),
        token = SHARED_KEY,
        log = log.display(),
        sock = sock.display(),
    );
    let config = dir.join("frpc.toml");
    std::fs::write(&config, toml).unwrap();
    let frpc = Frpc::start_with_config(config, log);
    wait_tunnel_echo(&frpc, port);
}

#[test]
fn t9_wrong_shared_key_is_refused_and_reported_to_the_ban_hook() {
    let server = start_server(true);
    let port = pick_remote_port();
    let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("bad", port, tcp_echo())]);
    opts.token = "wrong-key".into();
    opts.login_fail_exit = true;
    let mut frpc = Frpc::start(&opts);
    let status = frpc
        .wait_exit(Duration::from_secs(20))
        .expect("frpc exits after a refused login");
    assert!(!status.success());
    let log = frpc.log_text();
    assert!(
        log.contains("send Login request to plugin error"),
        "frpc log:\n{log}"
    );
    assert!(
        server.failures.load(Ordering::SeqCst) >= 1,
        "ban hook saw no failure"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "refused client got a port"
    );
}

#[test]
fn t13_plaintext_client_refused_by_tls_server() {
    let server = start_server(true);
    let mut opts = FrpcOpts::new(
        &server,
        vec![ProxyOpts::tcp("plain", pick_remote_port(), tcp_echo())],
    );
    opts.tls = None;
    opts.login_fail_exit = true;
    let mut frpc = Frpc::start(&opts);
    let status = frpc
        .wait_exit(Duration::from_secs(30))
        .expect("frpc gives up");
    assert!(!status.success());
    // The server survives and still serves a proper client.
    let port = pick_remote_port();
    let good = Frpc::start(&FrpcOpts::new(
        &server,
        vec![ProxyOpts::tcp("good", port, tcp_echo())],
    ));
    wait_tunnel_echo(&good, port);
}

#[test]
fn t10_port_outside_allow_list_and_second_port_per_client_are_refused() {
    let server = start_server(false);
    let backend = tcp_echo();
    let ok_port = pick_remote_port();
    // Alone on its client: with a second proxy, frpc's unordered NewProxy messages could
    // let the other one take the client's only port first, and frps (like Lyre) then
    // answers "exceed the max_ports_per_client" before checking the allow-list.
    let outside = FrpcOpts::new(&server, vec![ProxyOpts::tcp("outside", 22999, backend)]);
    let frpc_outside = Frpc::start(&outside);
    frpc_outside.wait_log(
        "[outside] start error: port not allowed",
        Duration::from_secs(20),
    );
    let opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("inside", ok_port, backend)]);
    let frpc = Frpc::start(&opts);
    wait_tunnel_echo(&frpc, ok_port);
    // A second port for the same client (frpc sends both NewProxy at login).
    let p2 = pick_remote_port();
    let opts2 = FrpcOpts::new(
        &server,
        vec![
            ProxyOpts::tcp("first", p2, backend),
            ProxyOpts::tcp("second", pick_remote_port(), backend),
        ],
    );
    let frpc2 = Frpc::start(&opts2);
    frpc2.wait_log(
        "start error: exceed the max_ports_per_client",
        Duration::from_secs(20),
    );
    // Another client asking for a port already taken.
    let opts3 = FrpcOpts::new(&server, vec![ProxyOpts::tcp("thief", ok_port, backend)]);
    let frpc3 = Frpc::start(&opts3);
    frpc3.wait_log(
        "[thief] start error: port already used",
        Duration::from_secs(20),
    );
    echo_once(ok_port, b"still mine");
}

/// 64 MiB up and back down through the `127.0.0.1:<remotePort>` listener: the upload side
/// reads straight into the yamux send queue (`Stream::fill_from`), the download side sends
/// from the stream's buffer; both must be byte-exact, with and without TLS.
fn bulk_echo_case(tls: bool) {
    const SIZE: u64 = 64 * 1024 * 1024;
    let server = start_server(tls);
    let port = pick_remote_port();
    let frpc = Frpc::start(&FrpcOpts::new(
        &server,
        vec![ProxyOpts::tcp("bulk", port, tcp_echo())],
    ));
    wait_tunnel_echo(&frpc, port);
    let mut s = connect_tunnel(port, Duration::from_secs(5));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        Pattern::new().for_each_block(SIZE, |b| w.write_all(b).unwrap());
    });
    let mut sink = HashSink::default();
    let mut buf = vec![0u8; 256 * 1024];
    while sink.size < SIZE {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("echo broken after {} bytes: {e}", sink.size));
        assert!(n > 0, "tunnel closed after {} bytes", sink.size);
        sink.update(&buf[..n]);
    }
    writer.join().unwrap();
    assert_eq!(sink.size, SIZE, "echoed size");
    assert_eq!(sink.hex(), Pattern::new().sha256(SIZE), "echoed sha256");
}

#[test]
fn bulk_echo_through_the_tunnel_port_is_byte_exact_tls() {
    bulk_echo_case(true);
}

#[test]
fn bulk_echo_through_the_tunnel_port_is_byte_exact_plaintext() {
    bulk_echo_case(false);
}

#[test]
fn t4_hundred_concurrent_connections() {
    let server = start_server(true);
    let port = pick_remote_port();
    let frpc = Frpc::start(&FrpcOpts::new(
        &server,
        vec![ProxyOpts::tcp("many", port, tcp_echo())],
    ));
    wait_tunnel_echo(&frpc, port);
    let threads: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect_tunnel(port, Duration::from_secs(5));
                let msg: Vec<u8> = format!("conn-{i}-").bytes().cycle().take(50_000).collect();
                let mut w = s.try_clone().unwrap();
                let m2 = msg.clone();
                let writer = std::thread::spawn(move || w.write_all(&m2).unwrap());
                let mut got = vec![0u8; msg.len()];
                s.read_exact(&mut got).unwrap();
                writer.join().unwrap();
                assert_eq!(got, msg, "connection {i}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn t15_use_encryption_and_compression() {
    let server = start_server(false);
    let port = pick_remote_port();
    let mut p = ProxyOpts::tcp("wrapped", port, tcp_echo());
    p.use_encryption = true;
    p.use_compression = true;
    let frpc = Frpc::start(&FrpcOpts::new(&server, vec![p]));
    wait_tunnel_echo(&frpc, port);
    let mut s = connect_tunnel(port, Duration::from_secs(5));
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | (i % 3 == 0) as u8)
        .collect();
    let mut w = s.try_clone().unwrap();
    let d2 = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&d2).unwrap());
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(
        got == data,
        "payload corrupted through encryption+compression"
    );
}

#[test]
fn t8_frpc_killed_and_restarted_gets_its_port_back() {
    let server = start_server(true);
    let port = pick_remote_port();
    let opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("again", port, tcp_echo())]);
    let mut frpc = Frpc::start(&opts);
    wait_tunnel_echo(&frpc, port);
    frpc.kill();
    // The dead session's port is freed when its TCP connection drops; the new process
    // (no run_id) registers the same name and port.
    let frpc2 = Frpc::start(&opts);
    wait_tunnel_echo(&frpc2, port);
}

#[test]
fn t16_heartbeat_pings_over_mux_get_pongs() {
    let server = start_server(true);
    let port = pick_remote_port();
    let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("hb", port, tcp_echo())]);
    opts.extra = "transport.heartbeatInterval = 1\ntransport.heartbeatTimeout = 3\n".into();
    let frpc = Frpc::start(&opts);
    wait_tunnel_echo(&frpc, port);
    // Six heartbeat intervals, twice the timeout: a missing Pong would end the session.
    std::thread::sleep(Duration::from_secs(6));
    let log = frpc.log_text();
    assert!(!log.contains("heartbeat timeout"), "frpc log:\n{log}");
    assert_eq!(
        log.matches("login to server success").count(),
        1,
        "frpc reconnected:\n{log}"
    );
    echo_once(port, b"after heartbeats");
}
