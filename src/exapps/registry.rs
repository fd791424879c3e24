//! The ExApp metadata cache (harp-compat.md §3.6, §4.2): positive cache without TTL,
//! 15 s negative cache, single-flight bookkeeping for `exapp-meta` fetches, the push/delete
//! semantics of `/exapp_storage/<id>`, and the classification of `exapp-meta` answers.
//!
//! One copy per worker (single-threaded, `Rc` records). Changes arrive as
//! [`super::StateUpdate`]s so every copy converges; nothing here does I/O or reads a clock.

use std::collections::HashMap;
use std::rc::Rc;

use super::flight::{FetchTicket, SingleFlight};
use super::record::{parse_record, ExAppRecord};
use super::{ExAppsError, StateUpdate};

/// How long "Nextcloud says not found" is remembered (HaRP: 15 s).
pub const NEGATIVE_TTL_MS: u64 = 15_000;
/// Cap on negative entries: unknown app ids come from the public path, so an attacker could
/// otherwise grow the map without bound. On overflow expired entries go first, then all.
pub const MAX_NEGATIVE_ENTRIES: usize = 65_536;

/// Result of a cache lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Rc<ExAppRecord>),
    /// Negative-cached: Nextcloud said 401/404 less than 15 s ago.
    NotFound,
    /// Nothing known: fetch `exapp-meta` (see [`Registry::begin_fetch`]).
    Miss,
}

/// Classified `exapp-meta` answer (§3.6 "Fetch"). Transport errors and timeouts are `Error`.
#[derive(Debug, Clone)]
pub enum MetaFetch {
    /// 2xx with a valid record: cache it (`StateUpdate::MetaFill`).
    Found(ExAppRecord),
    /// 401 or 404: negative-cache it (`StateUpdate::NegativeFill`).
    NotFound,
    /// 2xx whose body fails validation: 404, nothing cached, no failure recorded.
    Invalid(String),
    /// Any other status, timeout or connection error: 404, nothing cached.
    Error(String),
}

impl MetaFetch {
    /// The state update the caller applies and broadcasts after a fetch, if any.
    pub fn update(&self, app_id_lc: &str, now_ms: u64) -> Option<StateUpdate> {
        match self {
            MetaFetch::Found(record) => Some(StateUpdate::MetaFill {
                app_id_lc: app_id_lc.to_string(),
                record: Box::new(record.clone()),
            }),
            MetaFetch::NotFound => Some(StateUpdate::NegativeFill {
                app_id_lc: app_id_lc.to_string(),
                expires_at_ms: now_ms.saturating_add(NEGATIVE_TTL_MS),
            }),
            MetaFetch::Invalid(_) | MetaFetch::Error(_) => None,
        }
    }
}

/// Classify an `exapp-meta` HTTP answer.
pub fn classify_meta_response(status: u16, body: &[u8]) -> MetaFetch {
    match status {
        200..=299 => match parse_record(body) {
            Ok(record) => MetaFetch::Found(record),
            Err(e) => MetaFetch::Invalid(e.to_string()),
        },
        401 | 404 => MetaFetch::NotFound,
        other => MetaFetch::Error(format!("Nextcloud exapp-meta answered status {other}")),
    }
}

/// Why a push (`POST /exapp_storage/<id>`) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRejected {
    /// Body is not JSON (or empty): HaRP answers 500 (quirk, §8 item 18).
    InvalidJson(String),
    /// JSON of the wrong shape: 400 `400: Bad Request`.
    Schema(String),
}

impl PushRejected {
    pub fn status(&self) -> u16 {
        match self {
            PushRejected::InvalidJson(_) => 500,
            PushRejected::Schema(_) => 400,
        }
    }
}

/// Validate a push body. On success the returned update (204) is applied locally and
/// broadcast; `resolved_host` is reset so DNS is redone (§4.2).
pub fn parse_push(app_id: &str, body: &[u8]) -> Result<StateUpdate, PushRejected> {
    match parse_record(body) {
        Ok(mut record) => {
            record.resolved_host.clear();
            Ok(StateUpdate::Push {
                app_id_lc: app_id.to_lowercase(),
                record: Box::new(record),
            })
        }
        Err(ExAppsError::InvalidJson(m)) => Err(PushRejected::InvalidJson(m)),
        Err(e) => Err(PushRejected::Schema(e.to_string())),
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    records: HashMap<String, Rc<ExAppRecord>>,
    negative: HashMap<String, u64>,
    flights: SingleFlight<String>,
}

impl Registry {
    pub fn lookup(&self, app_id_lc: &str, now_ms: u64) -> Lookup {
        if let Some(r) = self.records.get(app_id_lc) {
            return Lookup::Found(Rc::clone(r));
        }
        match self.negative.get(app_id_lc) {
            Some(&expiry) if now_ms < expiry => Lookup::NotFound,
            _ => Lookup::Miss,
        }
    }

    /// Start an `exapp-meta` fetch for `app_id_lc` (single-flight, per worker copy).
    pub fn begin_fetch(&mut self, app_id_lc: &str) -> FetchTicket {
        self.flights.begin(app_id_lc.to_string())
    }

    pub fn add_fetch_waiter(&mut self, app_id_lc: &str, waiter: u64) -> bool {
        self.flights.add_waiter(&app_id_lc.to_string(), waiter)
    }

    /// The leader's fetch ended (any outcome): returns the waiters to hand the result to.
    pub fn finish_fetch(&mut self, app_id_lc: &str) -> Vec<u64> {
        self.flights.finish(&app_id_lc.to_string())
    }

    /// Push (AppAPI) or fill (Nextcloud fetch): store and clear the negative entry.
    pub fn insert(&mut self, app_id_lc: String, record: ExAppRecord) {
        self.negative.remove(&app_id_lc);
        self.records.insert(app_id_lc, Rc::new(record));
    }

    /// `DELETE /exapp_storage/<id>`: `true` (204) if an entry existed, `false` (404) if not.
    /// The negative cache is left alone (§3.6).
    pub fn delete(&mut self, app_id: &str) -> bool {
        self.records.remove(&app_id.to_lowercase()).is_some()
    }

    pub fn insert_negative(&mut self, app_id_lc: String, expires_at_ms: u64) {
        if self.negative.len() >= MAX_NEGATIVE_ENTRIES && !self.negative.contains_key(&app_id_lc) {
            self.negative
                .retain(|_, &mut e| e > expires_at_ms.saturating_sub(NEGATIVE_TTL_MS));
            if self.negative.len() >= MAX_NEGATIVE_ENTRIES {
                self.negative.clear();
            }
        }
        self.negative.insert(app_id_lc, expires_at_ms);
    }

    /// Memoise the resolved address of a cached record (§3.3 step 11): kept until the
    /// record is replaced. Ignored if the record is gone or its `host` changed meanwhile
    /// (a push raced with the resolution).
    pub fn set_resolved(&mut self, app_id_lc: &str, host: &str, resolved_host: String) {
        if let Some(r) = self.records.get_mut(app_id_lc) {
            if r.host == host {
                Rc::make_mut(r).resolved_host = resolved_host;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
