//! ExApp state a worker consults while deciding (harp-compat.md §3.6, §3.8, §3.9, §4.2):
//! the metadata [`Registry`], the [`SessionCache`], the [`BanStore`], plus the
//! [`StateUpdate`] messages that keep the per-worker copies in step.
//!
//! Everything here is single-threaded and pure (no sockets, no clocks: times are `u64`
//! milliseconds on one process-wide clock chosen by the caller). Each worker owns one
//! [`State`]; whoever changes state builds a [`StateUpdate`], applies it locally and
//! broadcasts it to the other workers, which `apply` it too. `StateUpdate` is `Send`.
//!
//! Does not own: the Nextcloud calls (`exapp-meta`, `user-info`), DNS, or the control API
//! HTTP layer; those feed their results in through the functions and updates here.

mod bans;
mod flight;
mod record;
mod registry;
mod session;

pub use bans::{BanStore, MAX_TRACKED_IPS};
pub use flight::{FetchTicket, SingleFlight, MAX_WAITERS_PER_KEY};
pub use record::{
    compile_route, lenient_int, parse_decimal_int, parse_record, AccessLevel, ExAppRecord, Route,
    MAX_ROUTE_REGEX_BYTES,
};
pub use registry::{
    classify_meta_response, parse_push, Lookup, MetaFetch, PushRejected, Registry,
    MAX_NEGATIVE_ENTRIES, NEGATIVE_TTL_MS,
};
pub use session::{
    classify_user_info_response, parse_user_info, SessionCache, UserAnswer, UserInfo, MAX_SESSIONS,
};

/// A record or `user-info` body that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExAppsError {
    /// Not JSON at all.
    InvalidJson(String),
    /// JSON of the wrong shape; `field` names the offending field.
    Schema { field: String, message: String },
}

impl std::fmt::Display for ExAppsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExAppsError::InvalidJson(e) => {
                write!(f, "body from AppAPI/Nextcloud is not valid JSON ({e}); check the sender")
            }
            ExAppsError::Schema { field, message } => write!(
                f,
                "body from AppAPI/Nextcloud: field `{field}`: {message}; check the ExApp's registration"
            ),
        }
    }
}

impl std::error::Error for ExAppsError {}

/// A change to worker state, applied locally and broadcast to every other worker.
#[derive(Debug, Clone)]
pub enum StateUpdate {
    /// `POST /exapp_storage/<id>` accepted (from [`parse_push`]).
    Push {
        app_id_lc: String,
        record: Box<ExAppRecord>,
    },
    /// `DELETE /exapp_storage/<id>`.
    Delete { app_id_lc: String },
    /// `exapp-meta` fetch found the app ([`MetaFetch::update`]).
    MetaFill {
        app_id_lc: String,
        record: Box<ExAppRecord>,
    },
    /// `exapp-meta` said 401/404 ([`MetaFetch::update`]).
    NegativeFill {
        app_id_lc: String,
        expires_at_ms: u64,
    },
    /// DNS result for a cached record's `host` (memoised until the record is replaced).
    /// `host` is the name that was resolved: the memo is dropped if the record changed.
    Resolved {
        app_id_lc: String,
        host: String,
        resolved_host: String,
    },
    /// One failure for an IP (from `decide` effects, response-phase checks, FRP logins).
    Failure { ip: String, at_ms: u64 },
    /// `user-info` result for a non-empty `oc_sessionPassphrase` cookie.
    SessionFill {
        cookie: Vec<u8>,
        user: UserInfo,
        at_ms: u64,
    },
}

/// All mutable decision state of one worker.
#[derive(Debug)]
pub struct State {
    pub registry: Registry,
    pub sessions: SessionCache,
    pub bans: BanStore,
}

impl State {
    /// `session_lifetime_ms` = `HP_SESSION_LIFETIME`, `blacklist_count` / `blacklist_window_ms`
    /// = `HP_BLACKLIST_COUNT` / `HP_BLACKLIST_WINDOW`.
    pub fn new(session_lifetime_ms: u64, blacklist_count: u32, blacklist_window_ms: u64) -> Self {
        State {
            registry: Registry::default(),
            sessions: SessionCache::new(session_lifetime_ms),
            bans: BanStore::new(blacklist_count, blacklist_window_ms),
        }
    }

    pub fn from_config(cfg: &crate::config::Config) -> Self {
        State::new(
            cfg.session_lifetime.as_millis() as u64,
            cfg.blacklist_count,
            cfg.blacklist_window.as_millis() as u64,
        )
    }

    pub fn apply(&mut self, update: StateUpdate) {
        match update {
            StateUpdate::Push { app_id_lc, record }
            | StateUpdate::MetaFill { app_id_lc, record } => {
                self.registry.insert(app_id_lc, *record)
            }
            StateUpdate::Delete { app_id_lc } => {
                self.registry.delete(&app_id_lc);
            }
            StateUpdate::NegativeFill {
                app_id_lc,
                expires_at_ms,
            } => self.registry.insert_negative(app_id_lc, expires_at_ms),
            StateUpdate::Resolved {
                app_id_lc,
                host,
                resolved_host,
            } => self.registry.set_resolved(&app_id_lc, &host, resolved_host),
            StateUpdate::Failure { ip, at_ms } => self.bans.record(&ip, at_ms),
            StateUpdate::SessionFill {
                cookie,
                user,
                at_ms,
            } => self.sessions.fill(cookie, user, at_ms),
        }
    }
}

#[cfg(test)]
mod tests;
