//! The async HTTP client for HaRP's two Nextcloud callbacks (harp-compat.md §3.6 exapp-meta,
//! §3.8 user-info, §2.2 fixed timeouts, Appendix C).
//!
//! Owns: one [`NcClient`] per monoio worker (`Rc`), its keep-alive pool to the one Nextcloud
//! origin (up to DEFAULT_MAX_CONNECTIONS, no cookie jar: `Set-Cookie` is never stored), DNS
//! for that host, plain HTTP or TLS (rustls, ring provider, system trust roots plus an
//! optional PEM file named by `LYRE_NC_CA_FILE`), request serialisation, response framing.
//! Does not own: what the answers mean (`crate::exapps::classify_*`), caching, single-flight
//! (`crate::exapps`), the decision (`crate::decide`).
//!
//! Timeouts (HaRP's aiohttp `ClientTimeout(total=25, connect=5)`): `connect_timeout` bounds
//! getting a connection (waiting for a pool slot, DNS, TCP connect, TLS handshake);
//! `total_timeout` bounds the whole call. Both are public fields so tests can shorten them.
//!
//! Requests are idempotent GETs, so a pooled connection that turns out to be closed by the
//! server (write fails, or EOF/reset before the first response byte) is retried once on a
//! fresh connection. Anything else is reported as [`NcError`] and never retried.
//!
//! Deliberate deviations from forwarding "all headers" to user-info (§3.8, H-47): besides
//! `host`/`content-length`, the hop-by-hop and framing headers (`connection`, `keep-alive`,
//! `proxy-connection`, `te`, `trailer`, `transfer-encoding`, `upgrade`, `expect`) are not
//! forwarded, because they describe the client's connection, not this bodiless GET, and
//! would break the framing of Lyre's own keep-alive connection; `accept-encoding` is
//! replaced by `identity` because Lyre does not decompress bodies (aiohttp did).
//!
//! The shared key is written into the request bytes only; it never appears in an error,
//! a log line or a `Debug` output.

mod conn;
mod dns;
mod pool;
mod response;
mod target;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use conn::Conn;
use dns::Resolver;
use pool::{Acquired, Pool, Pooled, Slot};
use response::{read_response, Complete, ReadFailure};

pub use dns::DEFAULT_DNS_TTL;
pub use pool::{DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_IDLE_TIMEOUT};
pub use response::Dechunker;
pub use target::{
    client_config, parse_url, NcTarget, ParsedUrl, LYRE_NC_CA_FILE, MAX_CA_FILE_BYTES,
};

/// HaRP's fixed connect timeout for Nextcloud callbacks (§2.2).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HaRP's fixed total timeout per Nextcloud callback (§2.2).
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(25);
/// Largest response body accepted (metadata with many routes is a few KiB).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Incoming headers never forwarded to user-info (see the module docs for why).
const NOT_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "harp-shared-key",
    "accept-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// A Nextcloud answer: any status (the caller classifies it) and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NcResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Counters for tests and the admin endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NcStats {
    /// New connections established.
    pub connects: u64,
    /// Calls served on a pooled connection.
    pub reuses: u64,
    /// Calls retried on a fresh connection after a pooled one was found closed.
    pub retries: u64,
}

#[derive(Debug)]
pub enum NcError {
    /// `NC_INSTANCE_URL` / `LYRE_NC_CA_FILE` cannot be used (message names the fix).
    Config(String),
    Resolve {
        host: String,
        error: String,
    },
    Connect {
        addr: SocketAddr,
        source: io::Error,
    },
    /// No connection within the connect timeout.
    ConnectTimeout(Duration),
    /// The call did not finish within the total timeout.
    Timeout(Duration),
    Tls(String),
    Io(io::Error),
    /// The server closed the connection without sending a response.
    Closed,
    Protocol(String),
    /// The body exceeded this many bytes.
    BodyTooLarge(usize),
}

impl fmt::Display for NcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CHECK: &str = "check that NC_INSTANCE_URL points at the Nextcloud web server \
                             and that it is reachable from Lyre";
        match self {
            NcError::Config(msg) => f.write_str(msg),
            NcError::Resolve { host, error } => write!(
                f,
                "cannot resolve the Nextcloud host '{host}' from NC_INSTANCE_URL: {error}; \
                 fix NC_INSTANCE_URL or the DNS configuration"
            ),
            NcError::Connect { addr, source } => write!(
                f,
                "cannot connect to Nextcloud at {addr} (NC_INSTANCE_URL): {source}; {CHECK}"
            ),
            NcError::ConnectTimeout(d) => write!(
                f,
                "no connection to Nextcloud within {d:?} (NC_INSTANCE_URL); {CHECK}"
            ),
            NcError::Timeout(d) => write!(
                f,
                "Nextcloud (NC_INSTANCE_URL) did not answer within {d:?}; check its load and logs"
            ),
            NcError::Tls(msg) => write!(
                f,
                "TLS with Nextcloud (NC_INSTANCE_URL) failed: {msg}; for a private or \
                 self-signed certificate set {LYRE_NC_CA_FILE} to its CA's PEM file"
            ),
            NcError::Io(e) => write!(f, "I/O error talking to Nextcloud (NC_INSTANCE_URL): {e}"),
            NcError::Closed => write!(
                f,
                "Nextcloud (NC_INSTANCE_URL) closed the connection without answering; {CHECK}"
            ),
            NcError::Protocol(msg) => write!(
                f,
                "Nextcloud (NC_INSTANCE_URL) sent an invalid HTTP response: {msg}; {CHECK}"
            ),
            NcError::BodyTooLarge(cap) => write!(
                f,
                "Nextcloud (NC_INSTANCE_URL) sent a response body over {cap} bytes \
                 (DEFAULT_MAX_BODY); check that NC_INSTANCE_URL points at Nextcloud"
            ),
        }
    }
}

impl std::error::Error for NcError {}

/// One worker's client. Not `Send`: create one per worker from a shared [`NcTarget`], and
/// use it only on the monoio runtime it was first used on (pooled sockets are registered
/// with that runtime's driver; another runtime on the same thread would panic in monoio).
pub struct NcClient {
    target: Arc<NcTarget>,
    resolver: Resolver,
    pool: Pool,
    /// Bound on getting a connection (pool wait + DNS + TCP + TLS); default 5 s.
    pub connect_timeout: Duration,
    /// Bound on a whole call; default 25 s.
    pub total_timeout: Duration,
    /// Largest body accepted; default DEFAULT_MAX_BODY.
    pub max_body: usize,
    stats: Cell<NcStats>,
}

impl NcClient {
    /// Parse `cfg.nc_base_url` (with `cfg.nc_ca_file` for https). Prefer
    /// [`NcTarget::from_config`] once + [`NcClient::from_target`] per worker.
    pub fn new(cfg: &Config) -> Result<NcClient, NcError> {
        Ok(Self::from_target(NcTarget::from_config(cfg)?))
    }

    pub fn from_target(target: Arc<NcTarget>) -> NcClient {
        Self::with_max_connections(target, DEFAULT_MAX_CONNECTIONS)
    }

    /// Like [`NcClient::from_target`] with another connection cap (tests, tuning).
    pub fn with_max_connections(target: Arc<NcTarget>, max_connections: usize) -> NcClient {
        NcClient {
            resolver: Resolver::new(&target.host, target.port),
            target,
            pool: Pool::new(max_connections),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            stats: Cell::new(NcStats::default()),
        }
    }

    pub fn target(&self) -> &NcTarget {
        &self.target
    }

    pub fn stats(&self) -> NcStats {
        self.stats.get()
    }

    /// Connections open (in use + idle) on this worker.
    pub fn open_connections(&self) -> usize {
        self.pool.open_count()
    }

    /// Connections currently idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// GET `<base>/index.php/apps/app_api/harp/exapp-meta?appId=<app_id_lc>` with
    /// `harp-shared-key` (§3.6, H-28).
    pub async fn exapp_meta(&self, app_id_lc: &str) -> Result<NcResponse, NcError> {
        let req = self.meta_request(app_id_lc);
        self.call(&req).await
    }

    /// GET `.../harp/user-info?appId=<app_id_lc>` forwarding `headers` (the request's
    /// headers; names any case, last value wins) minus NOT_FORWARDED, plus our
    /// `harp-shared-key` (§3.8, H-47).
    pub async fn user_info(
        &self,
        app_id_lc: &str,
        headers: &[(&[u8], &[u8])],
    ) -> Result<NcResponse, NcError> {
        let req = self.user_info_request(app_id_lc, headers);
        self.call(&req).await
    }

    /// The exact request bytes for exapp-meta (contains the shared key: never log it).
    pub fn meta_request(&self, app_id_lc: &str) -> Vec<u8> {
        let mut out = self.request_line(&self.target.meta_path, app_id_lc);
        out.extend_from_slice(b"user-agent: lyre/");
        out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        out.extend_from_slice(b"\r\naccept: */*\r\n");
        self.finish_request(out)
    }

    /// The exact request bytes for user-info (contains the shared key: never log it).
    pub fn user_info_request(&self, app_id_lc: &str, headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = self.request_line(&self.target.user_info_path, app_id_lc);
        for (name, value) in forwarded_headers(headers) {
            out.extend_from_slice(&name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        self.finish_request(out)
    }

    fn request_line(&self, path: &str, app_id_lc: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b"?appId=");
        percent_encode(app_id_lc.as_bytes(), &mut out);
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.target.host_header.as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }

    fn finish_request(&self, mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(b"accept-encoding: identity\r\nharp-shared-key: ");
        out.extend_from_slice(self.target.shared_key.expose().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out
    }

    async fn call(&self, req: &[u8]) -> Result<NcResponse, NcError> {
        match crate::runtime::time::limit(self.total_timeout, self.exchange(req)).await {
            Ok(result) => result,
            Err(_) => Err(NcError::Timeout(self.total_timeout)),
        }
    }

    async fn exchange(&self, req: &[u8]) -> Result<NcResponse, NcError> {
        let (mut p, pooled) = self.checkout().await?;
        let failure = match attempt(&mut p.conn, req, self.max_body).await {
            Ok(done) => return Ok(self.finish(p, done)),
            Err(ReadFailure::NothingReceived(_)) if pooled => None,
            Err(ReadFailure::NothingReceived(e) | ReadFailure::Partial(e)) => Some(e),
        };
        if let Some(e) = failure {
            return Err(e);
        }
        // The server closed the idle connection just before we used it: once more, fresh.
        self.bump(|s| s.retries += 1);
        let Pooled { conn, slot } = p;
        drop(conn);
        let mut p = self.bounded(self.open(slot)).await?;
        match attempt(&mut p.conn, req, self.max_body).await {
            Ok(done) => Ok(self.finish(p, done)),
            Err(ReadFailure::NothingReceived(e) | ReadFailure::Partial(e)) => Err(e),
        }
    }

    fn finish(&self, p: Pooled, done: Complete) -> NcResponse {
        if done.reusable {
            self.pool.put(p);
        }
        done.response
    }

    /// A connection and whether it came from the pool, within the connect timeout.
    async fn checkout(&self) -> Result<(Pooled, bool), NcError> {
        self.bounded(async {
            match self.pool.acquire().await {
                Acquired::Idle(p) => {
                    self.bump(|s| s.reuses += 1);
                    Ok((p, true))
                }
                Acquired::Fresh(slot) => Ok((self.open(slot).await?, false)),
            }
        })
        .await
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, NcError>>,
    ) -> Result<T, NcError> {
        match crate::runtime::time::limit(self.connect_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(NcError::ConnectTimeout(self.connect_timeout)),
        }
    }

    /// DNS, then each address in turn; the slot travels with the new connection.
    async fn open(&self, slot: Slot) -> Result<Pooled, NcError> {
        let addrs = self
            .resolver
            .resolve()
            .await
            .map_err(|error| NcError::Resolve {
                host: self.target.host.clone(),
                error,
            })?;
        let mut last = None;
        for addr in addrs {
            match Conn::open(addr, self.target.tls.as_ref()).await {
                Ok(conn) => {
                    self.bump(|s| s.connects += 1);
                    return Ok(Pooled { conn, slot });
                }
                Err(e) => last = Some(e),
            }
        }
        // invariant: the resolver never returns an empty list.
        Err(last.unwrap_or(NcError::Closed))
    }

    fn bump(&self, f: impl FnOnce(&mut NcStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

async fn attempt(conn: &mut Conn, req: &[u8], max_body: usize) -> Result<Complete, ReadFailure> {
    conn.write_all(req)
        .await
        .map_err(|e| ReadFailure::NothingReceived(NcError::Io(e)))?;
    read_response(conn, max_body).await
}

/// Lower-cased names, last value wins, NOT_FORWARDED and unsafe fields dropped, first-seen
/// order kept.
fn forwarded_headers<'a>(headers: &[(&[u8], &'a [u8])]) -> Vec<(Vec<u8>, &'a [u8])> {
    let mut out: Vec<(Vec<u8>, &[u8])> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let skip = NOT_FORWARDED
            .iter()
            .any(|n| n.as_bytes() == name.as_slice());
        if skip || !is_token(&name) || !is_field_value(value) {
            continue;
        }
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => out.push((name, value)),
        }
    }
    out
}

/// RFC 9110 token (a header name that cannot inject anything).
fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// No CR, LF or NUL (header injection); HTAB, SP, VCHAR and obs-text are fine.
fn is_field_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Query-value encoding: unreserved bytes (RFC 3986) stay, everything else is `%XX`.
fn percent_encode(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests;
