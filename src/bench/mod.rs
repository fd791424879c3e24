//! The built-in load generator (`lyre bench`): HTTP/1.1 keep-alive load from N connections
//! over W worker threads (one monoio runtime each) for a fixed duration; prints requests/s,
//! latency quantiles (log-linear histogram, within 6.25%), status-code counts and errors.
//!
//! Owns: the `bench` CLI arguments and the report. Does not own: TLS (plain HTTP only),
//! pipelining (one request in flight per connection), request bodies beyond a fixed string.
//! Budget per request: one `send` of the pre-rendered request, reads through one 64 KiB
//! buffer per connection, no allocation in steady state.

mod conn;
mod histogram;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::DriverChoice;
use crate::runtime;

pub use conn::Tally;
pub use histogram::Histogram;

/// Most connections / workers one run may use.
pub const MAX_CONNECTIONS: usize = 100_000;
pub const MAX_WORKERS: usize = 256;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Target URL, plain HTTP: http://host[:port]/path
    #[arg(short = 'u', long)]
    pub url: String,
    /// Concurrent keep-alive connections (one request in flight each).
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Worker threads, each with its own monoio runtime.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: usize,
    /// Run length in seconds.
    #[arg(short = 'd', long = "duration", default_value_t = 10)]
    pub duration_secs: u64,
    /// Per-request (and per-connect) timeout in milliseconds.
    #[arg(long = "timeout-ms", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Request method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body (sent with Content-Length).
    #[arg(long)]
    pub body: Option<String>,
}

/// The merged result of a run.
pub struct Report {
    pub elapsed: Duration,
    pub tally: Tally,
}

impl Report {
    pub fn requests(&self) -> u64 {
        self.tally.latency.count()
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Run the load and print the report.
pub fn run(args: BenchArgs) -> Result<(), String> {
    let report = run_report(&args)?;
    print!("{}", render(&args, &report));
    Ok(())
}

/// Run the load and return the merged counts (for benches that post-process them).
pub fn run_report(args: &BenchArgs) -> Result<Report, String> {
    let target = Target::parse(args)?;
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!("--connections must be 1..={MAX_CONNECTIONS}"));
    }
    if args.workers == 0 || args.workers > MAX_WORKERS {
        return Err(format!("--workers must be 1..={MAX_WORKERS}"));
    }
    let workers = args.workers.min(args.connections);
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration_secs);
    let mut handles = Vec::new();
    for w in 0..workers {
        let conns = args.connections / workers + usize::from(w < args.connections % workers);
        let (addr, req, head_only) = (target.addr, target.request.clone(), target.head_only);
        let spawned = std::thread::Builder::new()
            .name(format!("lyre-bench-{w}"))
            .spawn(move || worker(addr, req, head_only, conns, timeout, deadline));
        handles.push(spawned.map_err(|e| format!("cannot start worker thread: {e}"))?);
    }
    let mut tally = Tally::new();
    for h in handles {
        tally.merge(
            &h.join()
                .map_err(|_| "a bench worker panicked".to_string())??,
        );
    }
    Ok(Report {
        elapsed: start.elapsed().min(deadline - start),
        tally,
    })
}

/// One worker thread: its own runtime (io_uring when available, else epoll) and `conns`
/// connection tasks.
fn worker(
    addr: SocketAddr,
    request: Vec<u8>,
    head_only: bool,
    conns: usize,
    timeout: Duration,
    deadline: Instant,
) -> Result<Tally, String> {
    // The appliance's own runtime setup (deferred io_uring task running), so the load
    // generator costs the peer it measures as little as possible.
    let driver = runtime::pick_driver(DriverChoice::Auto)?;
    let run = runtime::block_on(driver, async move {
        let request = std::rc::Rc::new(request);
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let request = request.clone();
            tasks.push(monoio::spawn(async move {
                let mut tally = Tally::new();
                conn::drive(addr, &request, head_only, timeout, deadline, &mut tally).await;
                tally
            }));
        }
        let mut total = Tally::new();
        for t in tasks {
            total.merge(&t.await);
        }
        total
    });
    run.map_err(|e| format!("cannot build a monoio runtime: {e}"))
}

/// The parsed target: where to connect and the bytes to send.
struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
    head_only: bool,
}

impl Target {
    fn parse(args: &BenchArgs) -> Result<Target, String> {
        let rest = args
            .url
            .strip_prefix("http://")
            .ok_or_else(|| format!("url {:?}: only http:// URLs are supported", args.url))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("url {:?}: cannot resolve {authority:?}", args.url))?;
        let mut req = format!("{} {path} HTTP/1.1\r\nHost: {authority}\r\n", args.method);
        for h in &args.headers {
            if !h.contains(':') || h.contains('\r') || h.contains('\n') {
                return Err(format!(
                    "--header {h:?}: expected \"Name: value\" on one line"
                ));
            }
            req.push_str(&format!("{h}\r\n"));
        }
        if let Some(body) = &args.body {
            req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            req.push_str("\r\n");
        }
        let head_only = args.method.eq_ignore_ascii_case("HEAD");
        Ok(Target {
            addr,
            request: req.into_bytes(),
            head_only,
        })
    }
}

/// The human-readable report.
pub fn render(args: &BenchArgs, r: &Report) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    let h = &r.tally.latency;
    let mut out = format!(
        "lyre bench {}: {} connections, {} workers, {:.2} s\n\
         requests: {} ({:.1} req/s), connects: {}\n\
         latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n",
        args.url,
        args.connections,
        args.workers,
        r.elapsed.as_secs_f64(),
        r.requests(),
        r.requests_per_sec(),
        r.tally.connects,
        ms(h.quantile_us(0.5)),
        ms(h.quantile_us(0.9)),
        ms(h.quantile_us(0.99)),
        ms(h.max_us()),
    );
    let statuses: Vec<String> = (r.tally.statuses.iter().enumerate())
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| format!("{code} x {n}"))
        .collect();
    out.push_str(&format!("status: {}\n", join_or_none(&statuses)));
    let errors: Vec<String> = r
        .tally
        .errors
        .iter()
        .map(|(k, n)| format!("{k} x {n}"))
        .collect();
    out.push_str(&format!("errors: {}\n", join_or_none(&errors)));
    out
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests;
