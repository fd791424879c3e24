//! Socket addresses: the listeners (`HP_EXAPPS_ADDRESS`, `HP_EXAPPS_HTTPS_ADDRESS`,
//! `LYRE_CONTROL_ADDRESS`), `HP_FRP_ADDRESS` split HaRP's way (harp-compat.md §2.1, H-08),
//! and static routes (`LYRE_ROUTES`, `--route`). Hostnames are resolved once, here, at start.

use std::net::{SocketAddr, ToSocketAddrs};

use super::{FrpAddress, StaticRoute};

/// A listen address as HAProxy's `bind` takes it: `host:port`, `[v6]:port`, `*:port` or
/// `:port` (both = all IPv4 addresses), or a hostname resolved now. Port 0 is allowed (the
/// kernel picks one; tests use it).
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("expected host:port (e.g. 0.0.0.0:8780), got '{s}'"));
    };
    let host = if host.is_empty() || host == "*" {
        "0.0.0.0"
    } else {
        host
    };
    resolve(host, parse_port(port, s)?, s)
}

/// `HP_FRP_ADDRESS`: split on the FIRST `:` like HaRP's `cut -d:` (so IPv6 is not supported,
/// quirk). An empty host means all addresses, as frps's default `bindAddr`.
pub fn parse_frp_address(s: &str) -> Result<FrpAddress, String> {
    let Some((host, rest)) = s.split_once(':') else {
        return Err(format!("expected host:port (e.g. 0.0.0.0:8782), got '{s}'"));
    };
    // `cut -f2` takes the second field only: `a:1:2` has port `1`.
    let port_field = rest.split(':').next().unwrap_or(rest);
    let port = parse_port(port_field, s).map_err(|e| {
        if host.starts_with('[') {
            format!("{e} (IPv6 addresses are not supported here, as in HaRP)")
        } else {
            e
        }
    })?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok(FrpAddress {
        host: host.to_string(),
        port,
    })
}

/// The address to bind for `HP_FRP_ADDRESS`, hostnames resolved.
pub fn resolve_frp_address(frp: &FrpAddress) -> Result<SocketAddr, String> {
    let shown = format!("{}:{}", frp.host, frp.port);
    resolve(&frp.host, frp.port, &shown)
}

/// One static route `PREFIX=HOST:PORT`: requests whose path starts with `PREFIX` go to the
/// upstream. Shared by `LYRE_ROUTES` and the CLI's `--route`.
pub fn parse_route(s: &str) -> Result<StaticRoute, String> {
    let Some((prefix, upstream)) = s.trim().split_once('=') else {
        return Err(format!(
            "expected PREFIX=HOST:PORT (e.g. /demo=127.0.0.1:9000), got '{s}'"
        ));
    };
    let (prefix, upstream) = (prefix.trim(), upstream.trim());
    if !prefix.starts_with('/') {
        return Err(format!(
            "route prefix must start with '/', got '{prefix}' in '{s}'"
        ));
    }
    if prefix.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control()) {
        return Err(format!(
            "route prefix must not contain spaces or control characters: '{s}'"
        ));
    }
    let upstream = parse_upstream(upstream).map_err(|e| format!("route '{s}': {e}"))?;
    Ok(StaticRoute {
        prefix: prefix.to_string(),
        upstream,
    })
}

/// An upstream `HOST:PORT` (or `[v6]:PORT`); unlike a listen address it needs a host and a
/// non-zero port.
fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    let addr = match s.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let Some((host, port)) = s.rsplit_once(':').filter(|(h, _)| !h.is_empty()) else {
                return Err(format!("expected HOST:PORT, got '{s}'"));
            };
            resolve(host, parse_port(port, s)?, s)?
        }
    };
    if addr.port() == 0 {
        return Err(format!("upstream port must not be 0 in '{s}'"));
    }
    Ok(addr)
}

fn parse_port(port: &str, whole: &str) -> Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "port must be a number 0-65535, got '{port}' in '{whole}'"
        ));
    }
    port.parse()
        .map_err(|_| format!("port must be a number 0-65535, got '{port}' in '{whole}'"))
}

/// Resolve `host` (name or address), preferring IPv4 like HAProxy's default resolution order.
fn resolve(host: &str, port: u16, whole: &str) -> Result<SocketAddr, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}' in '{whole}': {e}; use an IP address or a resolvable name"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("host '{host}' in '{whole}' resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test literal")
    }

    #[test]
    fn listen_address_table() {
        let rows: &[(&str, Option<&str>)] = &[
            ("0.0.0.0:8780", Some("0.0.0.0:8780")),
            ("127.0.0.1:0", Some("127.0.0.1:0")),
            ("[::]:8780", Some("[::]:8780")),
            ("[::1]:8781", Some("[::1]:8781")),
            ("*:8780", Some("0.0.0.0:8780")),
            (":8780", Some("0.0.0.0:8780")),
            ("localhost:8780", Some("127.0.0.1:8780")),
            ("0.0.0.0", None),
            ("0.0.0.0:", None),
            ("0.0.0.0:65536", None),
            ("0.0.0.0:-1", None),
            ("0.0.0.0:80x", None),
            ("", None),
            ("no-such-host.invalid:80", None),
        ];
        for (input, want) in rows {
            assert_eq!(parse_listen_address(input).ok(), want.map(sa), "{input}");
        }
    }

    #[test]
    fn h08_frp_address_splits_on_first_colon() {
        let ok = |s: &str, host: &str, port: u16| {
            assert_eq!(
                parse_frp_address(s),
                Ok(FrpAddress {
                    host: host.into(),
                    port
                }),
                "{s}"
            );
        };
        ok("0.0.0.0:8782", "0.0.0.0", 8782);
        ok("harp.local:8782", "harp.local", 8782);
        ok(":8782", "0.0.0.0", 8782);
        ok("a:1:2", "a", 1);
        for bad in ["", "0.0.0.0", "0.0.0.0:", "0.0.0.0:port", "0.0.0.0:70000"] {
            assert!(parse_frp_address(bad).is_err(), "{bad}");
        }
        let v6 = parse_frp_address("[::1]:8782").expect_err("IPv6 is unsupported");
        assert!(v6.contains("IPv6"), "{v6}");
        let frp = FrpAddress {
            host: "localhost".into(),
            port: 8782,
        };
        assert_eq!(resolve_frp_address(&frp), Ok(sa("127.0.0.1:8782")));
    }

    #[test]
    fn route_table() {
        let ok = |s: &str, prefix: &str, up: &str| {
            let want = StaticRoute {
                prefix: prefix.into(),
                upstream: sa(up),
            };
            assert_eq!(parse_route(s), Ok(want), "{s}");
        };
        ok("/demo=127.0.0.1:9000", "/demo", "127.0.0.1:9000");
        ok(" /=[::1]:80 ", "/", "[::1]:80");
        ok("/a=localhost:81", "/a", "127.0.0.1:81");
        for bad in [
            "",
            "/demo",
            "demo=127.0.0.1:9000",
            "=127.0.0.1:9000",
            "/demo=127.0.0.1",
            "/demo=127.0.0.1:0",
            "/demo=:9000",
            "/de mo=127.0.0.1:9000",
            "/demo=no-such-host.invalid:9000",
            "/x=y=127.0.0.1:1",
        ] {
            assert!(parse_route(bad).is_err(), "{bad}");
        }
    }
}
