//! FRP server for unmodified frpc 0.61-0.65 clients (frp-protocol.md; HaRP's frps config,
//! harp-compat.md §5.1).
//!
//! Owns: the wire codecs (`msg`, `crypto`, `yamux`), the control protocol (`control`), the
//! per-worker registry of clients, proxies and pooled work connections (`registry`), the
//! accept loop (`server`), and work streams plus the 127.0.0.1:<remotePort> compatibility
//! listeners (`work`). Not owned: TLS (`crate::tls`), bans (the caller's [`BanHook`]),
//! routing of HTTP requests (`proxy`).
//!
//! A tunnel lives on one worker (its state is `Rc`). Every worker has its own
//! [`FrpContext`]; worker 0 accepts every FRP connection and places it by its first
//! message ([`directory`]): new sessions spread over the workers, a reconnect or a non-mux
//! work connection goes to the worker of its run_id. `open_work_stream` callers must be
//! on the worker that owns the port ([`Directory::owner`]).

pub mod channel;
pub mod control;
pub mod crypto;
pub mod directory;
pub mod msg;
pub mod registry;
pub mod server;
pub mod snappy;
pub mod work;
pub mod yamux;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::sync::Arc;

use crate::config::Secret;

pub use directory::Directory;
pub use server::{adopt, serve_frp, HandedFrp};
pub use work::{open_work_stream, WorkStream};

/// HaRP's `allowPorts` (harp-compat §5.1): ExApps, then Docker engines.
pub const HARP_ALLOWED_PORTS: [RangeInclusive<u16>; 2] = [23000..=23999, 24000..=24099];
/// HaRP's `maxPortsPerClient`.
pub const HARP_MAX_PORTS_PER_CLIENT: usize = 1;

/// Ban decisions supplied by the `decide` module; failed logins count as failures (§5.5).
pub trait BanHook {
    fn is_banned(&self, ip: IpAddr) -> bool;
    fn record_failure(&self, ip: IpAddr);
}

/// Moves an FRP connection to the worker it was placed on (the caller's worker bus);
/// that worker continues it with [`adopt`].
pub trait Handoff {
    fn send(&self, to: usize, conn: HandedFrp);
}

/// No bans: the default until the decision module supplies its own.
pub struct NoBans;

impl BanHook for NoBans {
    fn is_banned(&self, _ip: IpAddr) -> bool {
        false
    }
    fn record_failure(&self, _ip: IpAddr) {}
}

/// Everything the FRP server needs; one per worker (`Rc<FrpContext>`).
pub struct FrpContext {
    /// `HP_SHARED_KEY`: frpc sends it as `metadatas.token`.
    pub shared_key: Secret,
    /// mTLS required (HaRP's default), or plaintext and unverified TLS both accepted
    /// (`HP_FRP_DISABLE_TLS=true`, as frps with `force = false`).
    pub tls: crate::tls::FrpTls,
    pub allowed_ports: Vec<RangeInclusive<u16>>,
    pub max_ports_per_client: usize,
    /// Where remote ports listen (HaRP: `proxyBindAddr = 127.0.0.1`).
    pub proxy_bind_ip: IpAddr,
    pub bans: Box<dyn BanHook>,
    /// AES key of the control stream: derived from frps's `auth.token`, which HaRP leaves
    /// empty (frp-protocol §5.3).
    pub(crate) key: [u8; crypto::KEY_BYTES],
    pub(crate) registry: RefCell<registry::Registry>,
    /// How a connection placed on another worker gets there; `None` = one worker only.
    pub(crate) handoff: Option<Box<dyn Handoff>>,
}

impl FrpContext {
    /// HaRP's settings: allow-list 23000-23999/24000-24099, one port per client, proxies on
    /// 127.0.0.1, empty `auth.token`, no bans.
    pub fn new(shared_key: Secret, tls: crate::tls::FrpTls) -> FrpContext {
        FrpContext {
            shared_key,
            tls,
            allowed_ports: HARP_ALLOWED_PORTS.to_vec(),
            max_ports_per_client: HARP_MAX_PORTS_PER_CLIENT,
            proxy_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bans: Box::new(NoBans),
            key: crypto::derive_key(b""),
            registry: RefCell::new(registry::Registry::default()),
            handoff: None,
        }
    }

    pub fn with_bans(mut self, bans: Box<dyn BanHook>) -> FrpContext {
        self.bans = bans;
        self
    }

    /// This context is worker `worker`'s, among the workers sharing `directory`, and
    /// connections placed elsewhere travel by `handoff`.
    pub fn on_worker(
        self,
        worker: usize,
        directory: Arc<Directory>,
        handoff: Box<dyn Handoff>,
    ) -> FrpContext {
        {
            let mut reg = self.registry.borrow_mut();
            reg.worker = worker;
            reg.directory = directory;
        }
        FrpContext {
            handoff: Some(handoff),
            ..self
        }
    }

    pub fn worker(&self) -> usize {
        self.registry.borrow().worker
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.registry.borrow().directory.clone()
    }

    /// Remote ports currently registered (for health/metrics and tests).
    pub fn registered_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.registry.borrow().ports().collect();
        v.sort_unstable();
        v
    }

    /// Whether a tunnel is registered on `port` now (one map lookup; the fast-path check).
    pub fn has_port(&self, port: u16) -> bool {
        self.registry.borrow().proxy_by_port(port).is_some()
    }

    pub fn port_allowed(&self, port: u16) -> bool {
        self.allowed_ports.iter().any(|r| r.contains(&port))
    }
}

#[derive(Debug)]
pub enum FrpError {
    Io(std::io::Error),
    Msg(msg::MsgError),
    Tls(crate::tls::TlsError),
    Yamux(yamux::YamuxError),
    /// frpc's first message was neither Login nor NewWorkConn.
    UnexpectedFirstMessage(msg::MsgType),
    /// The peer sent nothing useful within the deadline.
    Timeout(&'static str),
    /// No frpc has registered this remote port.
    NoSuchPort(u16),
    /// frpc did not deliver a work connection within the user-connection timeout.
    NoWorkConn(u16),
}

impl std::fmt::Display for FrpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrpError::Io(e) => write!(f, "frpc connection: {e}"),
            FrpError::Msg(e) => write!(f, "{e}"),
            FrpError::Tls(e) => write!(f, "{e}"),
            FrpError::Yamux(e) => write!(f, "{e}"),
            FrpError::UnexpectedFirstMessage(t) => {
                write!(f, "frpc opened a stream with {t:?}; expected Login or NewWorkConn")
            }
            FrpError::Timeout(what) => write!(f, "frpc timed out: {what}"),
            FrpError::NoSuchPort(p) => write!(f, "no frpc tunnel registered on remote port {p}"),
            FrpError::NoWorkConn(p) => write!(
                f,
                "frpc on remote port {p} sent no work connection in time (is the ExApp's frpc alive?)"
            ),
        }
    }
}

impl std::error::Error for FrpError {}

impl From<std::io::Error> for FrpError {
    fn from(e: std::io::Error) -> Self {
        FrpError::Io(e)
    }
}
impl From<msg::MsgError> for FrpError {
    fn from(e: msg::MsgError) -> Self {
        FrpError::Msg(e)
    }
}

/// Spec test vectors are written as spaced hex (frp-protocol.md §11).
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        // invariant: test vectors are valid hex.
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}
