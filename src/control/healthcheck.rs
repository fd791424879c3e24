//! `lyre healthcheck`: the container health check of harp-compat.md §6.4, read from the
//! same environment as `lyre serve` and needing nothing else in the image (HaRP's
//! `/healthcheck.sh` needs curl and nc). Passes only if all hold:
//! - `GET /heartbeat` on `LYRE_CONTROL_ADDRESS` answers 2xx within [`PROBE_TIMEOUT`];
//! - a TCP connect succeeds to `HP_FRP_ADDRESS`, to `HP_EXAPPS_ADDRESS`, and to
//!   `HP_EXAPPS_HTTPS_ADDRESS` when `$LYRE_CERTS_DIR/cert.pem` exists.
//!
//! Wildcard listen addresses are probed on loopback (`0.0.0.0` as `127.0.0.1`, `[::]` as
//! `[::1]`), as HaRP's script does. Blocking std sockets: this is a one-shot command.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

/// Bound of each probe (HaRP's heartbeat check allows 5 s).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Run every probe; `Ok` lists what was checked, `Err` names the first failure's variable.
pub fn run(cfg: &Config) -> Result<String, String> {
    let control = probe_addr(cfg.control_address);
    heartbeat(control).map_err(|e| format!("LYRE_CONTROL_ADDRESS {control}: {e}"))?;
    let mut checked = vec![format!("heartbeat {control}")];
    let mut ports = vec![
        ("HP_FRP_ADDRESS", cfg.frp_bind_address),
        ("HP_EXAPPS_ADDRESS", cfg.exapps_address),
    ];
    if cfg.certs_dir.join("cert.pem").exists() {
        ports.push(("HP_EXAPPS_HTTPS_ADDRESS", cfg.exapps_https_address));
    }
    for (variable, addr) in ports {
        let addr = probe_addr(addr);
        TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
            .map_err(|e| format!("{variable} {addr}: cannot connect: {e}"))?;
        checked.push(format!("{variable} {addr}"));
    }
    Ok(checked.join(", "))
}

/// Where to reach a listener bound to `addr` from this host.
fn probe_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// `GET /heartbeat`, expecting a 2xx status line within [`PROBE_TIMEOUT`].
fn heartbeat(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot connect: {e}"))?;
    let io = |e: std::io::Error| format!("heartbeat failed: {e}");
    s.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(io)?;
    s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(io)?;
    match crate::http::status_line_code(&head) {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => Err(format!("heartbeat answered {code}")),
        None => Err("heartbeat answered something that is not HTTP".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        let rows = [
            ("0.0.0.0:8780", "127.0.0.1:8780"),
            ("[::]:8781", "[::1]:8781"),
            ("10.1.2.3:8782", "10.1.2.3:8782"),
        ];
        for (bound, probed) in rows {
            assert_eq!(probe_addr(bound.parse().unwrap()), probed.parse().unwrap());
        }
    }
}
