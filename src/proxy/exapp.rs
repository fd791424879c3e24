//! Running HaRP's decision for one request: call the pure `decide`, fetch what it asks for
//! (metadata, user-info) and resume, apply its effects, and resolve the ExApp's address.
//! The whole decision is bounded by [`DECISION_BUDGET`] (HaRP's SPOE budget: 30 s -> 503).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use tracing::debug;

use super::flight::{fetch_meta, fetch_user};
use super::worker::{now_ms, Worker};
use crate::decide::{decide, Context, DenyStatus, Facts, Forward, Resume, Verdict};
use crate::exapps::StateUpdate;
use crate::http::RequestHead;

/// HaRP: a decision slower than this gets `503 Service Unavailable (HaRP)` (H-70).
pub const DECISION_BUDGET: Duration = Duration::from_secs(30);
/// HaRP: DNS resolution of an ExApp host is capped at 10 s.
pub const DNS_BUDGET: Duration = Duration::from_secs(10);

/// What to do with a request after the decision.
pub enum Decided {
    /// Forward to the ExApp at `addr` with the decision's header/path edits.
    ExApp {
        fwd: Box<Forward>,
        addr: SocketAddr,
    },
    Control {
        path_and_query: Vec<u8>,
    },
    Docker {
        port: u16,
        path_and_query: Vec<u8>,
    },
    Deny(DenyStatus),
    Drop,
}

pub async fn decide_request(w: &Rc<Worker>, head: &RequestHead, peer: IpAddr) -> Decided {
    match crate::runtime::time::limit(DECISION_BUDGET, run_decision(w, head, peer)).await {
        Ok(d) => d,
        Err(_) => Decided::Deny(DenyStatus::Unavailable503),
    }
}

async fn run_decision(w: &Rc<Worker>, head: &RequestHead, peer: IpAddr) -> Decided {
    let facts = Facts::from_head(head, peer);
    let mut resume = Resume::default();
    loop {
        let decision = {
            let state = w.state.borrow();
            let ctx = Context {
                shared_key: &w.cfg.shared_key,
                trusted_proxies: &w.cfg.trusted_proxies,
                state: &state,
                now_ms: now_ms(),
            };
            decide(&facts, &ctx, &resume)
        };
        for effect in decision.effects {
            w.publish(effect.into_update(now_ms()));
        }
        match decision.verdict {
            // Cache misses are rare and their futures large (a Nextcloud call, maybe over
            // TLS): boxed, so every request's decision future stays small to move.
            Verdict::NeedMetadata { app_id_lc } => {
                resume.meta = Some(Box::pin(fetch_meta(w, &app_id_lc)).await);
            }
            Verdict::NeedUser {
                app_id_lc,
                pass_cookie,
            } => {
                let headers = user_info_headers(head);
                let fetch = fetch_user(w, &app_id_lc, &pass_cookie, headers);
                resume.user = Some(Box::pin(fetch).await);
            }
            Verdict::ExApp(fwd) => return resolve_exapp(w, fwd).await,
            Verdict::Control { path_and_query } => return Decided::Control { path_and_query },
            Verdict::Docker {
                port,
                path_and_query,
            } => {
                return Decided::Docker {
                    port,
                    path_and_query,
                }
            }
            Verdict::Deny(status) => return Decided::Deny(status),
            Verdict::Drop => return Decided::Drop,
        }
    }
}

/// §3.8: every request header except `host` and `content-length`, names lower-cased, the
/// last value of a repeated name winning (`harp-shared-key` is set by the client itself).
fn user_info_headers(head: &RequestHead) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(head.headers.len());
    for (name, value) in head.fields() {
        let name = name.to_ascii_lowercase();
        if name == b"host" || name == b"content-length" {
            continue;
        }
        out.retain(|(n, _)| *n != name);
        out.push((name, value.to_vec()));
    }
    out
}

/// §3.3 step 11: an IP literal is used as is; a name is resolved (IPv4 first) within 10 s
/// on the blocking pool and memoised on the record until it is replaced. Failure -> 404.
async fn resolve_exapp(w: &Rc<Worker>, fwd: Box<Forward>) -> Decided {
    let host = fwd
        .resolved_host
        .clone()
        .unwrap_or_else(|| fwd.host.clone());
    if let Ok(ip) = host.parse::<IpAddr>() {
        let addr = SocketAddr::new(ip, fwd.port);
        return Decided::ExApp { fwd, addr };
    }
    Box::pin(resolve_exapp_name(w, fwd)).await
}

async fn resolve_exapp_name(w: &Rc<Worker>, fwd: Box<Forward>) -> Decided {
    let name = fwd.host.clone();
    let lookup = monoio::spawn_blocking(move || resolve_ipv4_first(&name));
    let ip = match crate::runtime::time::limit(DNS_BUDGET, lookup).await {
        Ok(Ok(Some(ip))) => ip,
        other => {
            debug!(host = %fwd.host, ok = other.is_ok(), "ExApp host did not resolve");
            return Decided::Deny(DenyStatus::NotFound404);
        }
    };
    w.publish(StateUpdate::Resolved {
        app_id_lc: fwd.app_id_lc.clone(),
        host: fwd.host.clone(),
        resolved_host: ip.to_string(),
    });
    let addr = SocketAddr::new(ip, fwd.port);
    Decided::ExApp { fwd, addr }
}

fn resolve_ipv4_first(host: &str) -> Option<IpAddr> {
    let addrs: Vec<SocketAddr> = (host, 0).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(|a| a.ip())
}
