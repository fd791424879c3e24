//! Work-connection pool under bursts (frp-protocol §7.2), against the REAL frpc 0.65:
//! users that give up while waiting for a work connection, and bursts larger than the
//! pool, must never leave the tunnel unable to serve a fresh connection.
//! Needs frpc: tests/peers/install_frp.sh (or LYRE_FRPC=/path/to/frpc).

mod frp_harness;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use frp_harness::*;

/// Concurrent users per burst: well above the pool (1 + 10 slack) and frpc's 5 pre-opened.
const BURST: usize = 48;
/// Bursts in a row, each abandoning half its users while they wait.
const ROUNDS: usize = 6;
/// A fresh connection must be echoed well before frps's 10 s user-connection timeout,
/// which is what a starved pool ends in.
const FRESH_BOUND: Duration = Duration::from_secs(5);

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect tunnel port")
}

/// Open `BURST` users at once; close every other one at once (before a work connection
/// can have reached it), echo through the rest, then close them too.
fn burst(port: u16, round: usize) {
    let users: Vec<TcpStream> = (0..BURST).map(|_| connect(port)).collect();
    let mut kept = Vec::new();
    for (i, u) in users.into_iter().enumerate() {
        if i % 2 == 0 {
            let _ = u.shutdown(Shutdown::Both);
        } else {
            kept.push(u);
        }
    }
    let threads: Vec<_> = kept
        .into_iter()
        .enumerate()
        .map(|(i, mut u)| {
            std::thread::spawn(move || {
                u.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let msg = format!("r{round}-u{i}");
                u.write_all(msg.as_bytes()).unwrap();
                let mut got = vec![0u8; msg.len()];
                u.read_exact(&mut got).is_ok() && got == msg.as_bytes()
            })
        })
        .collect();
    for t in threads {
        // A user may be turned away during the burst itself (frpc answers slowly);
        // what matters is the tunnel afterwards.
        let _ = t.join();
    }
}

/// One echo on a brand-new connection, bounded by `FRESH_BOUND`.
fn fresh_echo(port: u16, tag: &str) -> Result<(), String> {
    let mut s = connect(port);
    s.set_read_timeout(Some(FRESH_BOUND)).unwrap();
    s.write_all(tag.as_bytes()).map_err(|e| e.to_string())?;
    let mut got = vec![0u8; tag.len()];
    s.read_exact(&mut got)
        .map_err(|e| format!("fresh connection after bursts: {e}"))?;
    if got != tag.as_bytes() {
        return Err(format!("fresh connection echoed {got:?}"));
    }
    Ok(())
}

fn abandoned_waiters_case(tcp_mux: bool) {
    let server = start_server(false);
    let port = pick_remote_port();
    let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("pool", port, tcp_echo())]);
    opts.tcp_mux = tcp_mux;
    let frpc = Frpc::start(&opts);
    wait_tunnel_echo(&frpc, port);
    for round in 0..ROUNDS {
        burst(port, round);
    }
    // Several in a row: each must get its own work connection, not a leftover one.
    for i in 0..(BURST / 4) {
        if let Err(e) = fresh_echo(port, &format!("fresh-{i}")) {
            panic!("{e}; frpc log tail:\n{}", tail(&frpc.log_text()));
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn abandoned_waiters_leave_the_pool_serving_mux() {
    abandoned_waiters_case(true);
}

#[test]
fn abandoned_waiters_leave_the_pool_serving_without_mux() {
    abandoned_waiters_case(false);
}

/// Connections a single tunnel must carry at once: above the bench's 1,000 idle
/// connections plus the proxy's pooled upstream connections (and above any small fixed
/// per-session stream cap; frps has none).
const HELD: usize = 1100;

/// frps serves any number of concurrent user connections per frpc session; holding many
/// open (idle websockets, pooled keep-alive upstreams) must not lock out a new one.
#[test]
fn many_held_connections_leave_room_for_a_fresh_one() {
    let server = start_server(false);
    let port = pick_remote_port();
    let opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("held", port, tcp_echo())]);
    let frpc = Frpc::start(&opts);
    wait_tunnel_echo(&frpc, port);
    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let mut s = connect(port);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let msg = format!("held-{i}");
        s.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        if let Err(e) = s.read_exact(&mut got) {
            panic!(
                "held connection {i} of {HELD}: {e}; frpc log tail:\n{}",
                tail(&frpc.log_text())
            );
        }
        held.push(s);
    }
    if let Err(e) = fresh_echo(port, "fresh-after-held") {
        panic!("{e}; frpc log tail:\n{}", tail(&frpc.log_text()));
    }
    drop(held);
}
