//! Nextcloud session validation cache and the `user-info` answer (harp-compat.md §3.8).
//!
//! Key = the `oc_sessionPassphrase` cookie value; value = the user and when it was fetched.
//! A hit is valid while `now - fetched <= HP_SESSION_LIFETIME`; lifetime 0 disables the cache.
//! Single-flight per cookie (Lyre fix of §8 item 5): concurrent misses for one cookie share
//! one `user-info` call, so at most one call per cookie per lifetime window per worker.
//! Requests authenticated only by `Authorization` never touch this cache.

use std::collections::HashMap;

use serde_json::Value;

use super::flight::{FetchTicket, SingleFlight};
use super::record::lenient_int;
use super::ExAppsError;
use crate::exapps::record::AccessLevel;

/// Cap on cached sessions per worker. On overflow expired entries are purged first, then the
/// oldest eighth is evicted (HaRP never bounds this map: §8 item 5).
pub const MAX_SESSIONS: usize = 65_536;

/// What Nextcloud said about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// Empty for an anonymous caller.
    pub user_id: String,
    pub access_level: AccessLevel,
}

/// Classified `user-info` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAnswer {
    /// 2xx with a valid body: cache it (when the request had a pass cookie).
    User(UserInfo),
    /// 4xx: anonymous, not cached.
    Anonymous,
    /// 5xx, timeout, connection error, invalid body: the verdict is 401.
    Failed(String),
}

/// Parse a 2xx `user-info` body: `{"user_id": "...", "access_level": 0|1|2}`.
pub fn parse_user_info(body: &[u8]) -> Result<UserInfo, ExAppsError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ExAppsError::InvalidJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| schema("(user-info)", "expected a JSON object"))?;
    let user_id = match obj.get("user_id") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(schema("user_id", "expected a string")),
    };
    let level = obj
        .get("access_level")
        .ok_or_else(|| schema("access_level", "required"))
        .and_then(|v| {
            lenient_int(v).ok_or_else(|| schema("access_level", "expected an integer"))
        })?;
    let access_level =
        AccessLevel::from_int(level).ok_or_else(|| schema("access_level", "expected 0, 1 or 2"))?;
    Ok(UserInfo {
        user_id,
        access_level,
    })
}

fn schema(field: &str, message: &str) -> ExAppsError {
    ExAppsError::Schema {
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// Classify a `user-info` HTTP answer (transport errors/timeouts: build `Failed` directly).
pub fn classify_user_info_response(status: u16, body: &[u8]) -> UserAnswer {
    match status {
        200..=299 => match parse_user_info(body) {
            Ok(u) => UserAnswer::User(u),
            Err(e) => UserAnswer::Failed(e.to_string()),
        },
        400..=499 => UserAnswer::Anonymous,
        other => UserAnswer::Failed(format!("Nextcloud user-info answered status {other}")),
    }
}

#[derive(Debug)]
pub struct SessionCache {
    lifetime_ms: u64,
    entries: HashMap<Vec<u8>, (UserInfo, u64)>,
    flights: SingleFlight<Vec<u8>>,
}

impl SessionCache {
    pub fn new(lifetime_ms: u64) -> Self {
        SessionCache {
            lifetime_ms,
            entries: HashMap::new(),
            flights: SingleFlight::default(),
        }
    }

    fn fresh(&self, fetched_ms: u64, now_ms: u64) -> bool {
        self.lifetime_ms > 0 && now_ms.saturating_sub(fetched_ms) <= self.lifetime_ms
    }

    /// Read-only lookup used by `decide` (expired entries read as a miss).
    pub fn peek(&self, cookie: &[u8], now_ms: u64) -> Option<&UserInfo> {
        if cookie.is_empty() {
            return None;
        }
        match self.entries.get(cookie) {
            Some((user, at)) if self.fresh(*at, now_ms) => Some(user),
            _ => None,
        }
    }

    /// Lookup that deletes an expired entry, as HaRP does.
    pub fn lookup(&mut self, cookie: &[u8], now_ms: u64) -> Option<UserInfo> {
        let (user, at) = self.entries.get(cookie)?;
        if self.fresh(*at, now_ms) {
            return Some(user.clone());
        }
        self.entries.remove(cookie);
        None
    }

    /// Store a `user-info` result for a non-empty cookie (anonymous results included).
    pub fn fill(&mut self, cookie: Vec<u8>, user: UserInfo, fetched_ms: u64) {
        if cookie.is_empty() || self.lifetime_ms == 0 {
            return;
        }
        if self.entries.len() >= MAX_SESSIONS && !self.entries.contains_key(&cookie) {
            self.evict(fetched_ms);
        }
        self.entries.insert(cookie, (user, fetched_ms));
    }

    fn evict(&mut self, now_ms: u64) {
        let lifetime = self.lifetime_ms;
        self.entries
            .retain(|_, (_, at)| now_ms.saturating_sub(*at) <= lifetime);
        if self.entries.len() < MAX_SESSIONS {
            return;
        }
        let mut ages: Vec<u64> = self.entries.values().map(|(_, at)| *at).collect();
        let nth = ages.len() / 8;
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        self.entries.retain(|_, (_, at)| *at > cutoff);
    }

    pub fn begin_fetch(&mut self, cookie: &[u8]) -> FetchTicket {
        self.flights.begin(cookie.to_vec())
    }

    pub fn add_fetch_waiter(&mut self, cookie: &[u8], waiter: u64) -> bool {
        self.flights.add_waiter(&cookie.to_vec(), waiter)
    }

    pub fn finish_fetch(&mut self, cookie: &[u8]) -> Vec<u64> {
        self.flights.finish(&cookie.to_vec())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
