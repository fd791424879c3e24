//! CPU time from /proc, shared by the benches: a process's or thread's utime + stime, and
//! the whole machine's busy time ("what did the whole transfer cost"). On loopback every
//! hop's kernel work (the receiver's softirq processing, wakeups) runs in whichever
//! process happens to trigger it, so one process's CPU time can move onto its peers; the
//! machine's busy time cannot.

// Each bench includes this file and uses a subset of it.
#![allow(dead_code)]

/// Busy time of all CPUs so far, in seconds (user, nice, system, irq, softirq, steal from
/// the first line of /proc/stat; idle and iowait are not busy), and the total elapsed CPU
/// time over all CPUs, in the same unit.
pub fn busy_and_total_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let hz = clock_ticks();
    ((total - idle) as f64 / hz, total as f64 / hz)
}

/// A window of machine time: busy CPU seconds and the busy share since `start`.
pub struct Window {
    busy0: f64,
    total0: f64,
}

impl Window {
    pub fn start() -> Window {
        let (busy0, total0) = busy_and_total_secs();
        Window { busy0, total0 }
    }

    /// (busy CPU seconds of the whole machine, busy share 0..=1) since `start`.
    pub fn end(&self) -> (f64, f64) {
        let (busy, total) = busy_and_total_secs();
        let b = busy - self.busy0;
        (b, b / (total - self.total0).max(f64::MIN_POSITIVE))
    }
}

/// utime + stime (fields 14, 15) of a /proc/<pid>[/task/<tid>]/stat file, in clock ticks.
pub fn stat_ticks(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    // The comm field may contain spaces: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of /proc's CPU times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
