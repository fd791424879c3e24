//! Hostile and byte-level clients against Lyre's FRP server over raw TCP (sozu style): each
//! attack must end only its own connection, after which a real frpc still works.

mod common;
mod frp_harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use frp_harness::*;
use lyre::frp::crypto::{derive_key, privilege_key, CfbReader, CfbWriter};
use lyre::frp::msg::{self, Login, LoginResp, MsgType};

fn raw(server: &Server) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Everything the server sends until it closes the connection.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("server did not close the connection: {e}"),
        }
    }
}

fn assert_server_healthy(server: &Server) {
    let port = pick_remote_port();
    let frpc = Frpc::start(&FrpcOpts::new(
        server,
        vec![ProxyOpts::tcp("healthy", port, tcp_echo())],
    ));
    wait_tunnel_echo(&frpc, port);
}

fn yamux(ty: u8, flags: u16, id: u32, len: u32) -> Vec<u8> {
    let mut h = vec![0, ty];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

fn good_login() -> Vec<u8> {
    let mut login = Login {
        version: "0.65.0".into(),
        timestamp: 1795683251,
        pool_count: 1,
        ..Default::default()
    };
    login.privilege_key = privilege_key(b"", login.timestamp);
    login.metas.insert("token".into(), SHARED_KEY.into());
    let mut out = Vec::new();
    msg::write_msg(&mut out, MsgType::Login, &login);
    out
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let server = start_server(false);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "yamux bad version after SYN",
            [yamux(1, 1, 1, 0), vec![7; 12]].concat(),
        ),
        ("yamux bad frame type", yamux(9, 0, 0, 0)),
        ("non-mux unknown message type", b"zzzzzzzzzzzz".to_vec()),
        (
            "non-mux oversized Login",
            [vec![b'o'], 10241i64.to_be_bytes().to_vec()].concat(),
        ),
        (
            "non-mux negative length",
            [vec![b'o'], (-5i64).to_be_bytes().to_vec()].concat(),
        ),
        (
            "non-mux Login with JSON garbage",
            [vec![b'o'], 3i64.to_be_bytes().to_vec(), b"{{{".to_vec()].concat(),
        ),
    ];
    // A DATA frame bigger than any window we ever grant.
    cases.push((
        "yamux window violation",
        [yamux(1, 1, 1, 0), yamux(0, 0, 1, 8 << 20)].concat(),
    ));
    for (name, bytes) in cases {
        let mut s = raw(&server);
        s.write_all(&bytes).unwrap();
        let _ = read_to_close(&mut s);
        eprintln!("closed as expected: {name}");
    }
    assert_server_healthy(&server);
}

#[test]
fn window_violation_gets_go_away_protocol_error() {
    let server = start_server(false);
    let mut s = raw(&server);
    s.write_all(&[yamux(1, 1, 1, 0), yamux(0, 0, 1, 8 << 20)].concat())
        .unwrap();
    let got = read_to_close(&mut s);
    // First the immediate ACK of stream 1, then GO_AWAY(1).
    assert!(
        got.starts_with(&yamux(1, 2, 1, 1024 * 1024 - 256 * 1024)),
        "got {got:02x?}"
    );
    assert!(got.ends_with(&yamux(3, 0, 0, 1)), "got {got:02x?}");
}

#[test]
fn yamux_syn_is_acked_at_once_and_pings_are_echoed() {
    let server = start_server(false);
    let mut s = raw(&server);
    // frpc's exact opening frame (§11.1), then a ping with value 7.
    s.write_all(&yamux(1, 1, 1, 6029312)).unwrap();
    s.write_all(&yamux(2, 1, 0, 7)).unwrap();
    let mut got = [0u8; 24];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got[..12], &yamux(1, 2, 1, 1024 * 1024 - 256 * 1024)[..]);
    assert_eq!(&got[12..], &yamux(2, 2, 0, 7)[..]);
}

#[test]
fn non_mux_login_gets_plaintext_resp_then_encrypted_req_work_conn() {
    let server = start_server(false);
    let mut s = raw(&server);
    s.write_all(&good_login()).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], b'1');
    let len = i64::from_be_bytes(head[1..9].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let resp: LoginResp = msg::parse_body(MsgType::LoginResp, &body).unwrap();
    assert!(resp.error.is_empty(), "{resp:?}");
    assert_eq!(resp.run_id.len(), 16);
    // IV (16) + encrypted ReqWorkConn (11), key of the empty auth.token (§5.3).
    let mut wire = [0u8; 27];
    s.read_exact(&mut wire).unwrap();
    let key = derive_key(b"");
    let mut r = CfbReader::new(&key);
    assert_eq!(r.open(&mut wire), b"r\0\0\0\0\0\0\0\x02{}");
    // Ping -> Pong over the encrypted stream.
    let mut w = CfbWriter::new(&key);
    let mut ping = Vec::new();
    msg::write_msg(&mut ping, MsgType::Ping, &msg::Empty {});
    let mut out = Vec::new();
    w.seal(&ping, &mut out);
    s.write_all(&out).unwrap();
    let mut pong = [0u8; 11];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(r.open(&mut pong), b"4\0\0\0\0\0\0\0\x02{}");
}

#[test]
fn wrong_privilege_key_is_refused_with_frps_words() {
    let server = start_server(false);
    let mut login = Login {
        version: "0.65.0".into(),
        timestamp: 1795683251,
        ..Default::default()
    };
    login.privilege_key = privilege_key(b"some auth.token", login.timestamp);
    login.metas.insert("token".into(), SHARED_KEY.into());
    let mut out = Vec::new();
    msg::write_msg(&mut out, MsgType::Login, &login);
    let mut s = raw(&server);
    s.write_all(&out).unwrap();
    let got = read_to_close(&mut s);
    let f = msg::parse_frame(&got).unwrap().unwrap();
    assert_eq!(f.ty, MsgType::LoginResp);
    let resp: LoginResp = msg::parse_body(f.ty, f.body).unwrap();
    assert_eq!(
        resp.error,
        "token in login doesn't match token from configuration"
    );
    assert_eq!(server.failures.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Read one plaintext LoginResp from a raw non-mux control connection.
fn read_login_resp(s: &mut TcpStream) -> LoginResp {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    let len = i64::from_be_bytes(head[1..9].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    msg::parse_body(MsgType::LoginResp, &body).unwrap()
}

/// Log in (non-mux) with `run_id`, register a tcp proxy on `port`, return the connection.
fn login_with_proxy(server: &Server, run_id: &str, port: u16) -> (TcpStream, CfbReader) {
    let mut login = Login {
        version: "0.65.0".into(),
        timestamp: 7,
        run_id: run_id.into(),
        ..Default::default()
    };
    login.privilege_key = privilege_key(b"", 7);
    login.metas.insert("token".into(), SHARED_KEY.into());
    let mut out = Vec::new();
    msg::write_msg(&mut out, MsgType::Login, &login);
    let mut s = raw(server);
    s.write_all(&out).unwrap();
    let resp = read_login_resp(&mut s);
    assert_eq!((resp.run_id.as_str(), resp.error.as_str()), (run_id, ""));
    let key = derive_key(b"");
    let mut w = CfbWriter::new(&key);
    let np = msg::NewProxy {
        proxy_name: format!("p-{run_id}"),
        proxy_type: "tcp".into(),
        remote_port: port.into(),
        ..Default::default()
    };
    let mut plain = Vec::new();
    msg::write_msg(&mut plain, MsgType::NewProxy, &np);
    let mut wire = Vec::new();
    w.seal(&plain, &mut wire);
    s.write_all(&wire).unwrap();
    // IV + ReqWorkConn (11) + NewProxyResp.
    let mut r = CfbReader::new(&key);
    let mut plain_in = Vec::new();
    let mut buf = [0u8; 1024];
    let resp = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed during NewProxy");
        plain_in.extend_from_slice(r.open(&mut buf[..n]));
        let mut at = 0;
        let mut found = None;
        while let Some(f) = msg::parse_frame(&plain_in[at..]).unwrap() {
            if f.ty == MsgType::NewProxyResp {
                found = Some(msg::parse_body::<msg::NewProxyResp>(f.ty, f.body).unwrap());
            }
            at += f.len;
        }
        plain_in.drain(..at);
        if let Some(x) = found {
            break x;
        }
    };
    assert_eq!(resp.error, "", "{resp:?}");
    assert_eq!(resp.remote_addr, format!(":{port}"));
    (s, r)
}

#[test]
fn relogin_with_same_run_id_replaces_the_old_control_and_frees_its_port() {
    let server = start_server(false);
    let port = pick_remote_port();
    let (mut old, _) = login_with_proxy(&server, "0123456789abcdef", port);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "proxy port listening"
    );
    // Same run_id again (frpc after a reconnect): the old control is closed and the new
    // one registers the same port at once.
    let (_new, _) = login_with_proxy(&server, "0123456789abcdef", port);
    let _ = read_to_close(&mut old);
}

/// The same through `lyre serve` with two workers: the second session lives on worker 1,
/// and its reconnect, accepted by worker 0, must go to worker 1 to replace the old control
/// there (placed by least sessions it would land on worker 0, whose registry knows
/// nothing of the old control, and the port would stay taken).
#[test]
fn relogin_reaches_the_worker_its_run_id_lives_on() {
    let lyre = common::Lyre::start(
        &[
            ("LYRE_WORKERS", "2"),
            ("HP_FRP_DISABLE_TLS", "true"),
            ("HP_LOG_LEVEL", "info"),
            ("HP_SHARED_KEY", SHARED_KEY),
        ],
        &[],
    );
    let server = Server {
        port: lyre.frp_port,
        failures: Default::default(),
        pki: None,
    };
    let (_first, _) = login_with_proxy(&server, "00000000000000aa", pick_remote_port());
    let port = pick_remote_port();
    let (mut old, _) = login_with_proxy(&server, "00000000000000bb", port);
    let on_worker_1 = |log: &str| {
        log.lines()
            .filter(|l| l.contains("frp client logged in") && l.contains("worker=1"))
            .count()
    };
    assert_eq!(on_worker_1(&lyre.log()), 1, "{}", lyre.log());
    let (_new, _) = login_with_proxy(&server, "00000000000000bb", port);
    let _ = read_to_close(&mut old);
    assert_eq!(on_worker_1(&lyre.log()), 2, "{}", lyre.log());
}

#[test]
fn unauthenticated_session_cannot_open_many_streams() {
    let server = start_server(false);
    let mut s = raw(&server);
    let mut out = Vec::new();
    for id in [1u32, 3, 5, 7] {
        out.extend(yamux(1, 1, id, 0));
    }
    s.write_all(&out).unwrap();
    let mut got = [0u8; 48];
    s.read_exact(&mut got).unwrap();
    // Two streams ACKed, the rest refused with RST until a Login succeeds.
    assert_eq!(&got[..12], &yamux(1, 2, 1, 1024 * 1024 - 256 * 1024)[..]);
    assert_eq!(&got[12..24], &yamux(1, 2, 3, 1024 * 1024 - 256 * 1024)[..]);
    assert_eq!(&got[24..36], &yamux(1, 8, 5, 0)[..]);
    assert_eq!(&got[36..], &yamux(1, 8, 7, 0)[..]);
}

/// A yamux work stream is parked only on its control's own session. An attacker who knows
/// a live run_id (frpc logs it; so does Lyre) opens its own session and offers
/// NewWorkConn streams for it: they are refused, and no user connection of the real
/// frpc's proxy is ever sent to the attacker (frps checks only the run_id).
#[test]
fn work_streams_for_a_run_id_are_taken_only_from_its_own_session() {
    let server = start_server(false);
    let port = pick_remote_port();
    let frpc = Frpc::start(&FrpcOpts::new(
        &server,
        vec![ProxyOpts::tcp("victim", port, tcp_echo())],
    ));
    wait_tunnel_echo(&frpc, port);
    let log = frpc.log_text();
    let run_id = log
        .split("get run id [")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("no run id in the frpc log:\n{log}"))
        .to_string();
    let mut attacker = raw(&server);
    let mut out = Vec::new();
    for id in [1u32, 3] {
        let mut m = Vec::new();
        let body = msg::NewWorkConn {
            run_id: run_id.clone(),
            ..Default::default()
        };
        msg::write_msg(&mut m, MsgType::NewWorkConn, &body);
        out.extend(yamux(1, 1, id, 0)); // SYN
        out.extend(yamux(0, 0, id, m.len() as u32));
        out.extend(m);
    }
    attacker.write_all(&out).unwrap();
    for i in 0..10 {
        echo_once(port, format!("user-{i}").as_bytes());
    }
    // Everything the attacker's session got: no data for its streams (no StartWorkConn,
    // no user bytes); the login deadline ends it.
    attacker
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let got = read_to_close(&mut attacker);
    let mut at = 0;
    while at + 12 <= got.len() {
        let (ty, len) = (
            got[at + 1],
            u32::from_be_bytes(got[at + 8..at + 12].try_into().unwrap()),
        );
        let payload = if ty == 0 { len as usize } else { 0 };
        assert!(
            payload == 0,
            "the attacker's work stream received {payload} bytes: {:?}",
            String::from_utf8_lossy(&got[at + 12..(at + 12 + payload).min(got.len())])
        );
        at += 12 + payload;
    }
    echo_once(port, b"still served");
}

/// Seconds from connect until the server closes `s`, writing `trickle` (one byte at a time,
/// every 2 s) meanwhile; `None` if it is still open after `give_up`.
fn closed_after(mut s: TcpStream, trickle: &[u8], give_up: Duration) -> Option<f64> {
    let start = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut next = trickle.iter();
    let mut buf = [0u8; 256];
    while start.elapsed() < give_up {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed().as_secs_f64()),
            Ok(_) => {} // yamux ACKs and pings: the session is still up
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed().as_secs_f64())
            }
            Err(_) => {
                if let Some(b) = next.next() {
                    if s.write_all(&[*b]).is_err() {
                        return Some(start.elapsed().as_secs_f64());
                    }
                }
            }
        }
    }
    None
}

/// The opening deadlines run from accept, as frps's 10 s read deadline does: a first
/// message trickled a byte every 2 s (each read well inside 10 s) is cut off 10 s after
/// connect, and a yamux session that opens a stream and never logs in is closed at the
/// 15 s login deadline, not 10 s of placement look-ahead later.
#[test]
fn openers_get_their_deadlines_from_accept_however_they_trickle() {
    let server = start_server(false);
    // A Login frame header announcing a 200-byte body, then the body, slowly.
    let mut login_head = vec![b'o'];
    login_head.extend_from_slice(&200u64.to_be_bytes());
    let plain = raw(&server);
    plain.set_nodelay(true).unwrap();
    (&plain).write_all(&login_head).unwrap();
    let mux = raw(&server);
    (&mux).write_all(&yamux(1, 1, 1, 0)).unwrap(); // SYN for stream 1, nothing else
    let give_up = Duration::from_secs(40);
    let trickler = std::thread::spawn(move || closed_after(plain, &[b'{'; 200], give_up));
    let syn_only = std::thread::spawn(move || closed_after(mux, &[], give_up));
    let plain_secs = trickler.join().unwrap();
    let mux_secs = syn_only.join().unwrap();
    assert!(
        plain_secs.is_some_and(|s| s < 14.0),
        "trickled first message closed after {plain_secs:?} s (deadline 10 s from connect)"
    );
    assert!(
        mux_secs.is_some_and(|s| s < 20.0),
        "yamux opener without a Login closed after {mux_secs:?} s (deadline 15 s from connect)"
    );
    assert_server_healthy(&server);
}
