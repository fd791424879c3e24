//! HaRP's routing and authorization decision as pure code (harp-compat.md §3, checklist
//! H-21..H-70). Never touches a socket, a clock, DNS or Nextcloud.
//!
//! Owns: the ordered checks of §3.3 (bans, `..`, app id, `app_api` management §3.4,
//! AppAPI-signed requests §3.5, metadata lookup, internal endpoints, session, routes), the
//! outgoing ExApp headers (§3.7) and the response-phase brute-force check (§3.9).
//! Does not own: the state itself (`crate::exapps`), the Nextcloud calls, DNS, forwarding.
//!
//! # Shape: a pure, re-runnable function
//!
//! [`decide`] reads the request [`Facts`] and a [`Context`] (shared key, trusted proxies,
//! `&exapps::State`, `now_ms`) plus a [`Resume`] (answers the caller already fetched) and
//! returns a [`Decision`]: a [`Verdict`] and the [`Effect`]s to apply. It never mutates
//! state: failures come back as `Effect::RecordFailure`. The two "need more" verdicts are
//! only returned before any effect is produced, so running `decide` again from the top is
//! side-effect free. The caller's loop:
//!
//! 1. `decide(&facts, &ctx, &Resume::default())`.
//! 2. [`Verdict::NeedMetadata`]: single-flight via `Registry::begin_fetch`; the leader calls
//!    `exapp-meta`, classifies it (`exapps::classify_meta_response`, or `MetaFetch::Error`
//!    on transport error/timeout), applies + broadcasts `MetaFetch::update`, finishes the
//!    flight and hands the `MetaFetch` to the followers. Everyone calls `decide` again with
//!    `resume.meta = Some(fetch)`.
//! 3. [`Verdict::NeedUser`]: same with `SessionCache::begin_fetch` keyed by the cookie (no
//!    single-flight when the cookie is empty: `Authorization`-only requests are never
//!    shared or cached). The leader calls `user-info`, classifies it
//!    (`exapps::classify_user_info_response`), applies + broadcasts `StateUpdate::SessionFill`
//!    for `UserAnswer::User` when the cookie is non-empty, then everyone calls `decide` with
//!    `resume.user` set (and `resume.meta` kept).
//! 4. Apply every [`Effect`] (`Effect::into_update(now_ms)`, apply + broadcast), then act on
//!    the verdict. For [`Verdict::ExApp`] resolve `Forward::host` unless `resolved_host` is
//!    set (failure -> 404, no failure recorded), broadcast `StateUpdate::Resolved`, forward,
//!    and when the response head arrives call [`response_failure`].
//! 5. A decision that takes longer than 30 s overall -> `DenyStatus::Unavailable503` (H-70).

mod checks;
pub mod client_ip;
pub mod path;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Secret;
use crate::exapps::{MetaFetch, State, StateUpdate, UserAnswer};

pub use checks::decide;
pub use client_ip::client_ip;
pub use path::{find_app_id, find_pass_cookie, has_parent_segment, split_target, target_path};

/// Header access with HaRP's rules: names case-insensitive, the LAST occurrence wins.
/// Values may carry surrounding whitespace; `decide` trims them.
pub trait HeaderLookup {
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl HeaderLookup for crate::http::RequestHead {
    fn header(&self, name: &str) -> Option<&[u8]> {
        crate::http::RequestHead::header(self, name)
    }
}

/// `(name, value)` pairs in arrival order (tests, simple callers).
impl HeaderLookup for [(&str, &[u8])] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// What the request says (§3.1).
pub struct Facts<'a, H: HeaderLookup + ?Sized> {
    /// Path as received: undecoded, without the query string.
    pub path: &'a [u8],
    /// Query after the first `?` (`Some(b"")` for a bare `?`), appended byte-exact.
    pub query: Option<&'a [u8]>,
    pub headers: &'a H,
    /// TCP peer of the connection to Lyre.
    pub peer_ip: IpAddr,
    /// `oc_sessionPassphrase` cookie value ([`find_pass_cookie`]); empty if absent.
    pub pass_cookie: &'a [u8],
}

impl<'a> Facts<'a, crate::http::RequestHead> {
    /// Facts of a parsed request head: path/query split at the first `?` of the origin
    /// form (an absolute-form target is read as HAProxy's `path` reads it, without scheme
    /// and authority), the pass cookie from every `Cookie` line (last occurrence wins).
    pub fn from_head(head: &'a crate::http::RequestHead, peer_ip: IpAddr) -> Self {
        let (path, query) = split_target(head.origin_form());
        let cookies = head
            .headers
            .iter()
            .filter(|h| head.raw[h.name.clone()].eq_ignore_ascii_case(b"cookie"))
            .map(|h| &head.raw[h.value.clone()]);
        Facts {
            path,
            query,
            headers: head,
            peer_ip,
            pass_cookie: find_pass_cookie(cookies),
        }
    }
}

/// Frozen configuration and this worker's state, read-only.
pub struct Context<'a> {
    pub shared_key: &'a Secret,
    pub trusted_proxies: &'a [IpNet],
    pub state: &'a State,
    /// Milliseconds on the clock used for every `StateUpdate` timestamp.
    pub now_ms: u64,
}

/// Answers the caller fetched after a `Need*` verdict.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub meta: Option<MetaFetch>,
    pub user: Option<UserAnswer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyStatus {
    Unauthorized401,
    Forbidden403,
    NotFound404,
    /// `503 Service Unavailable (HaRP)`: the decision itself failed.
    Unavailable503,
}

impl DenyStatus {
    pub fn code(self) -> u16 {
        match self {
            DenyStatus::Unauthorized401 => 401,
            DenyStatus::Forbidden403 => 403,
            DenyStatus::NotFound404 => 404,
            DenyStatus::Unavailable503 => 503,
        }
    }
}

/// Forward to an ExApp (§3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Target path plus `?query` when the request had one, byte-exact.
    pub target_path: Vec<u8>,
    /// `EX-APP-ID`, `EX-APP-VERSION`, `AUTHORIZATION-APP-API`, `AA-VERSION`, in that order;
    /// each replaces any incoming header of the same name.
    pub set_headers: [(&'static str, Vec<u8>); 4],
    /// Lower-cased app id: the registry key for `StateUpdate::Resolved`.
    pub app_id_lc: String,
    /// Record `host` (IP literal or name to resolve: IPv4 first, 10 s cap).
    pub host: String,
    /// Memoised resolution of `host`, if any: use it instead of resolving.
    pub resolved_host: Option<String>,
    pub port: u16,
    /// Response statuses that record a failure (§3.9); empty for most routes.
    pub bruteforce_statuses: Vec<u16>,
    pub client_ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Close without any HTTP response (best-effort RST).
    Drop,
    /// Answer with HaRP's plain-text page for that status.
    Deny(DenyStatus),
    ExApp(Box<Forward>),
    /// Forward to the control API with this path (query kept).
    Control {
        path_and_query: Vec<u8>,
    },
    /// Forward to `127.0.0.1:<port>` (Docker Engine passthrough, §4.6 allow-list applies).
    Docker {
        port: u16,
        path_and_query: Vec<u8>,
    },
    /// Fetch `exapp-meta?appId=<app_id_lc>`, then decide again with `Resume::meta`.
    NeedMetadata {
        app_id_lc: String,
    },
    /// Call `user-info?appId=<app_id_lc>` with the request's headers, then decide again with
    /// `Resume::user`. `pass_cookie` is the cache/single-flight key (empty: do not cache).
    NeedUser {
        app_id_lc: String,
        pass_cookie: Vec<u8>,
    },
}

/// A state change the caller applies (and broadcasts) before acting on the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    RecordFailure { ip: String },
}

impl Effect {
    pub fn into_update(self, at_ms: u64) -> StateUpdate {
        match self {
            Effect::RecordFailure { ip } => StateUpdate::Failure { ip, at_ms },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub effects: Vec<Effect>,
    /// §3.2 client IP in text form (ban key), for logs.
    pub client_ip: String,
}

/// Response phase (§3.9, H-64/H-65): a failure for `client_ip` iff the forwarded request had
/// a brute-force list containing the ExApp's response status. The response is not changed.
pub fn response_failure(
    bruteforce_statuses: &[u16],
    status: u16,
    client_ip: &str,
) -> Option<Effect> {
    bruteforce_statuses
        .contains(&status)
        .then(|| Effect::RecordFailure {
            ip: client_ip.to_string(),
        })
}

#[cfg(test)]
mod tests;
