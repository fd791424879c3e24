//! Which remote ports have a live tunnel right now, readable from every worker.
//!
//! The tunnels themselves live on the one worker that runs the FRP server; other workers
//! only need to know whether `127.0.0.1:<port>` is a tunnel, to hand such a request's
//! connection to that worker instead of relaying it through the port's loopback listener.
//! One bit per port, set and cleared by the FRP worker's registry; readers take no lock.

use std::sync::atomic::{AtomicU64, Ordering};

const WORDS: usize = (u16::MAX as usize + 1) / 64;

pub struct LiveTunnels {
    bits: Box<[AtomicU64]>,
}

impl Default for LiveTunnels {
    fn default() -> Self {
        LiveTunnels {
            bits: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LiveTunnels {
    pub fn set(&self, port: u16, live: bool) {
        let (word, bit) = (port as usize / 64, 1u64 << (port % 64));
        if live {
            self.bits[word].fetch_or(bit, Ordering::Release);
        } else {
            self.bits[word].fetch_and(!bit, Ordering::Release);
        }
    }

    pub fn is_live(&self, port: u16) -> bool {
        let (word, bit) = (port as usize / 64, 1u64 << (port % 64));
        self.bits[word].load(Ordering::Acquire) & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::LiveTunnels;

    #[test]
    fn ports_are_independent_bits() {
        let live = LiveTunnels::default();
        for p in [0u16, 63, 64, 23000, 24099, u16::MAX] {
            assert!(!live.is_live(p));
            live.set(p, true);
            assert!(live.is_live(p));
        }
        live.set(23000, false);
        assert!(!live.is_live(23000));
        assert!(live.is_live(24099) && live.is_live(64) && live.is_live(63));
    }
}
