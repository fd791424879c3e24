//! Lyre's own knobs (`LYRE_*`): worker count, CPU pinning, driver, pump, control address,
//! static routes. HaRP has no equivalent; an empty value means the default.

use super::address::{parse_listen_address, parse_route};
use super::defaults::{DEFAULT_CONTROL_ADDRESS, MAX_MAX_CONNECTIONS, MAX_WORKERS};
use super::{DriverChoice, PumpChoice, StaticRoute};

/// `LYRE_WORKERS`: `1..=MAX_WORKERS`; the default is the number of CPUs.
pub fn parse_workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number from 1 to {MAX_WORKERS}, got '{s}'"
        )),
    }
}

/// `LYRE_MAX_CONNECTIONS`: `1..=MAX_MAX_CONNECTIONS` concurrent client connections.
pub fn parse_max_connections(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number from 1 to {MAX_MAX_CONNECTIONS}, got '{s}'"
        )),
    }
}

/// Number of CPUs this process may run on, capped to `MAX_WORKERS`.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_WORKERS)
}

/// `LYRE_PIN_CPUS`: `true`/`false`/`1`/`0` (any case for the words).
pub fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("must be true, false, 1 or 0, got '{s}'")),
    }
}

/// `LYRE_DRIVER`: `auto`, `uring` (also `io_uring`/`iouring`) or `epoll`.
pub fn parse_driver(s: &str) -> Result<DriverChoice, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(DriverChoice::Auto),
        "uring" | "io_uring" | "iouring" => Ok(DriverChoice::IoUring),
        "epoll" => Ok(DriverChoice::Epoll),
        _ => Err(format!("must be auto, uring or epoll, got '{s}'")),
    }
}

/// `LYRE_PUMP`: `splice` or `copy`.
pub fn parse_pump(s: &str) -> Result<PumpChoice, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "splice" => Ok(PumpChoice::Splice),
        "copy" => Ok(PumpChoice::Copy),
        _ => Err(format!("must be splice or copy, got '{s}'")),
    }
}

/// `LYRE_CONTROL_ADDRESS`, default `127.0.0.1:8200`.
pub fn parse_control_address(s: Option<&str>) -> Result<std::net::SocketAddr, String> {
    s.map_or(Ok(DEFAULT_CONTROL_ADDRESS), |s| {
        parse_listen_address(s.trim())
    })
}

/// `LYRE_ROUTES`: comma-separated `PREFIX=HOST:PORT`; empty items skipped; a prefix may
/// appear once (two upstreams for one prefix would be ambiguous).
pub fn parse_routes(s: &str) -> Result<Vec<StaticRoute>, String> {
    let mut routes: Vec<StaticRoute> = Vec::new();
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let route = parse_route(item)?;
        if routes.iter().any(|r| r.prefix == route.prefix) {
            return Err(format!(
                "prefix '{}' appears twice; give each prefix one upstream",
                route.prefix
            ));
        }
        routes.push(route);
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knob_tables() {
        assert_eq!(parse_workers("4"), Ok(4));
        assert_eq!(parse_workers("1024"), Ok(1024));
        for bad in ["0", "1025", "-1", "x", ""] {
            assert!(parse_workers(bad).is_err(), "{bad}");
        }
        assert!((1..=MAX_WORKERS).contains(&default_workers()));

        for (s, b) in [
            ("true", true),
            ("1", true),
            ("TRUE", true),
            ("false", false),
            ("0", false),
        ] {
            assert_eq!(parse_flag(s), Ok(b), "{s}");
        }
        assert!(parse_flag("yes").is_err());

        for (s, d) in [
            ("auto", DriverChoice::Auto),
            ("uring", DriverChoice::IoUring),
            ("io_uring", DriverChoice::IoUring),
            ("EPOLL", DriverChoice::Epoll),
        ] {
            assert_eq!(parse_driver(s), Ok(d), "{s}");
        }
        assert!(parse_driver("kqueue").is_err());

        assert_eq!(parse_pump("splice"), Ok(PumpChoice::Splice));
        assert_eq!(parse_pump("copy"), Ok(PumpChoice::Copy));
        assert!(parse_pump("zero-copy").is_err());

        assert_eq!(
            parse_control_address(None),
            Ok("127.0.0.1:8200".parse().expect("literal"))
        );
        assert_eq!(
            parse_control_address(Some("127.0.0.1:0")),
            Ok("127.0.0.1:0".parse().expect("literal"))
        );
        assert!(parse_control_address(Some("8200")).is_err());
    }

    #[test]
    fn routes_list() {
        let routes = parse_routes("/a=127.0.0.1:1, ,/b=127.0.0.1:2,").expect("valid");
        assert_eq!(routes.len(), 2);
        assert_eq!(
            (routes[0].prefix.as_str(), routes[1].prefix.as_str()),
            ("/a", "/b")
        );
        assert!(parse_routes("/a=127.0.0.1:1,/a=127.0.0.1:2").is_err());
        assert!(parse_routes("/a=127.0.0.1:1,b=127.0.0.1:2").is_err());
        assert_eq!(parse_routes(""), Ok(vec![]));
    }
}
