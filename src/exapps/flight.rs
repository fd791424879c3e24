//! Single-flight bookkeeping: concurrent misses for one key share one outgoing call
//! (harp-compat.md §3.6 "Single-flight", H-27; and Lyre's fix of §8 item 5 for user-info).
//!
//! Pure data structure, no async: the caller owns the actual wake-up mechanism and passes
//! an opaque waiter token (e.g. an index into its own table of oneshot senders). The leader
//! does the call, then calls [`SingleFlight::finish`] and delivers the result (success or
//! error) to every returned waiter.

use std::collections::HashMap;
use std::hash::Hash;

/// Cap on followers parked behind one leader; more callers than this fall back to being
/// told `Follower` without being parked (`add_waiter` returns `false`) and must retry.
pub const MAX_WAITERS_PER_KEY: usize = 4096;

/// What a caller that missed the cache must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchTicket {
    /// Nobody is fetching this key: you do the call, then `finish`.
    Leader,
    /// A call is already running: park with `add_waiter` and wait for the leader's result.
    Follower,
}

#[derive(Debug)]
pub struct SingleFlight<K: Eq + Hash> {
    in_flight: HashMap<K, Vec<u64>>,
}

impl<K: Eq + Hash> Default for SingleFlight<K> {
    fn default() -> Self {
        SingleFlight {
            in_flight: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> SingleFlight<K> {
    pub fn begin(&mut self, key: K) -> FetchTicket {
        match self.in_flight.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => FetchTicket::Follower,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Vec::new());
                FetchTicket::Leader
            }
        }
    }

    /// Park a follower. `false` if no call is in flight for `key` (the leader already
    /// finished: look at the cache again) or the waiter list is full.
    pub fn add_waiter(&mut self, key: &K, waiter: u64) -> bool {
        match self.in_flight.get_mut(key) {
            Some(list) if list.len() < MAX_WAITERS_PER_KEY => {
                list.push(waiter);
                true
            }
            _ => false,
        }
    }

    /// The leader is done: forget the flight and return the parked followers to wake.
    pub fn finish(&mut self, key: &K) -> Vec<u64> {
        self.in_flight.remove(key).unwrap_or_default()
    }

    pub fn is_in_flight(&self, key: &K) -> bool {
        self.in_flight.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// H-27: concurrent first requests for one app -> exactly one leader; all others wait and
    /// are handed back by `finish`; after it the next miss leads a new call.
    #[test]
    fn h27_one_leader_per_key() {
        let mut f: SingleFlight<String> = SingleFlight::default();
        assert_eq!(f.begin("app".into()), FetchTicket::Leader);
        assert_eq!(f.begin("other".into()), FetchTicket::Leader);
        for w in 1..=3 {
            assert_eq!(f.begin("app".into()), FetchTicket::Follower);
            assert!(f.add_waiter(&"app".into(), w));
        }
        assert_eq!(f.finish(&"app".into()), vec![1, 2, 3]);
        assert!(!f.is_in_flight(&"app".into()));
        assert!(!f.add_waiter(&"app".into(), 9));
        assert!(f.is_in_flight(&"other".into()));
        assert_eq!(f.begin("app".into()), FetchTicket::Leader);
    }
}
