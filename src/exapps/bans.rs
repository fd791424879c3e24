//! Failure store and ban check (harp-compat.md §3.9, H-36/H-37).
//!
//! Map `client ip text -> failure timestamps`. A timestamp is old when
//! `now - ts >= window`. Banned iff the remaining count `>= count`. The ban is sliding: it
//! lifts as soon as enough failures age out. Timestamps are milliseconds on one process-wide
//! clock (the caller's), so failures broadcast between workers compare correctly.
//!
//! Memory is bounded (HaRP's map is not, §8 item 5):
//! - per IP at most `count` timestamps are kept (the newest ones). That is exact: the ban only
//!   asks whether `count` failures lie inside the window, and the newest `count` answer that;
//! - at most [`MAX_TRACKED_IPS`] addresses: on overflow every address whose failures all
//!   left the window is dropped, and if that is not enough the eighth of addresses with the
//!   oldest latest failure is evicted (they are the least likely to be banned soon).

use std::collections::{HashMap, VecDeque};

pub const MAX_TRACKED_IPS: usize = 100_000;

#[derive(Debug)]
pub struct BanStore {
    count: usize,
    window_ms: u64,
    failures: HashMap<String, VecDeque<u64>>,
}

impl BanStore {
    /// `count` = `HP_BLACKLIST_COUNT`, `window_ms` = `HP_BLACKLIST_WINDOW` in milliseconds.
    pub fn new(count: u32, window_ms: u64) -> Self {
        BanStore {
            count: count as usize,
            window_ms,
            failures: HashMap::new(),
        }
    }

    fn in_window(&self, ts: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(ts) < self.window_ms
    }

    /// Record one failure at `at_ms` (may arrive out of order from another worker).
    pub fn record(&mut self, ip: &str, at_ms: u64) {
        if !self.failures.contains_key(ip) && self.failures.len() >= MAX_TRACKED_IPS {
            self.evict(at_ms);
        }
        let window = self.window_ms;
        let cap = self.count.max(1);
        let list = self.failures.entry(ip.to_string()).or_default();
        list.retain(|&ts| at_ms.saturating_sub(ts) < window);
        let pos = list
            .iter()
            .rposition(|&ts| ts <= at_ms)
            .map_or(0, |p| p + 1);
        list.insert(pos, at_ms);
        while list.len() > cap {
            list.pop_front();
        }
    }

    /// Banned iff at least `count` failures lie inside the window ending at `now_ms`.
    /// `count == 0` bans nobody (HaRP would ban everyone; Config rejects nonsense earlier).
    pub fn is_banned(&self, ip: &str, now_ms: u64) -> bool {
        if self.count == 0 {
            return false;
        }
        self.failures.get(ip).is_some_and(|list| {
            list.iter()
                .filter(|&&ts| self.in_window(ts, now_ms))
                .count()
                >= self.count
        })
    }

    fn evict(&mut self, now_ms: u64) {
        let window = self.window_ms;
        self.failures.retain(|_, list| {
            list.back()
                .is_some_and(|&ts| now_ms.saturating_sub(ts) < window)
        });
        if self.failures.len() < MAX_TRACKED_IPS {
            return;
        }
        let mut latest: Vec<u64> = self
            .failures
            .values()
            .filter_map(|l| l.back().copied())
            .collect();
        let nth = latest.len() / 8;
        let (_, cutoff, _) = latest.select_nth_unstable(nth);
        let cutoff = *cutoff;
        self.failures
            .retain(|_, list| list.back().is_some_and(|&ts| ts > cutoff));
    }

    pub fn tracked_ips(&self) -> usize {
        self.failures.len()
    }
}
