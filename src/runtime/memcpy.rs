//! Process start: steer glibc's `memcpy` away from `REP MOVSB` where that is slow.
//!
//! glibc before 2.39 copies 2 KiB..~L2-sized blocks with `REP MOVSB` on AMD CPUs that
//! report ERMS/FSRM, and on Zen that is several times slower than its vector loop when
//! source and destination are misaligned or 4 KiB-aliased (glibc bug 30994, fixed in 2.39).
//! rustls copies every TLS record into a buffer 5 bytes past an allocation (the record
//! header), so on such a host a third of Lyre's CPU on an HTTPS download was that copy.
//! Measured on an AMD EPYC 2-vCPU VM, glibc 2.36, 1 GiB over HTTPS through `lyre serve`:
//! 2.0-2.3 CPU-s/GiB as is, 1.2-1.7 with the vector loop.
//!
//! glibc reads its tunables once, when the process starts, so the only way to change the
//! choice is to start again: [`prefer_vector_copies`] re-executes the binary (same pid,
//! same arguments) with `GLIBC_TUNABLES` set, before any thread exists. It does nothing
//! when `GLIBC_TUNABLES` is already set (the operator's choice, or our own after the
//! re-exec), with `LYRE_MEMCPY=glibc`, off x86_64, on other vendors or on glibc >= 2.39.

use std::ffi::CStr;

/// `LYRE_MEMCPY`: `glibc` keeps glibc's own choice; anything else (default) lets Lyre
/// choose as above.
pub use crate::config::names::LYRE_MEMCPY;
/// The tunable Lyre sets: never use `REP MOVSB` (the vector loop, and non-temporal stores
/// for huge copies, as glibc 2.39+ does on these CPUs).
pub const TUNABLE: &str = "glibc.cpu.x86_rep_movsb_threshold=2147483647";

/// What the host is, as far as this decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub amd: bool,
    /// glibc (major, minor); `None` when not running on glibc.
    pub glibc: Option<(u32, u32)>,
}

/// The `GLIBC_TUNABLES` value to restart with, if any. `tunables_set`: the variable is
/// already in the environment; `opt_out`: `LYRE_MEMCPY=glibc`.
pub fn wanted(host: Host, tunables_set: bool, opt_out: bool) -> Option<&'static str> {
    let old_glibc = matches!(host.glibc, Some(v) if v < (2, 39));
    (host.amd && old_glibc && !tunables_set && !opt_out).then_some(TUNABLE)
}

/// This machine.
pub fn host() -> Host {
    Host {
        amd: cpu_is_amd(),
        glibc: glibc_version(),
    }
}

/// Re-execute with [`TUNABLE`] when [`wanted`]; returns (only) when not re-executing or
/// when the exec failed (then the process goes on with glibc's choice).
pub fn prefer_vector_copies() {
    let tunables_set = std::env::var_os("GLIBC_TUNABLES").is_some();
    let opt_out = std::env::var(LYRE_MEMCPY).is_ok_and(|v| v.eq_ignore_ascii_case("glibc"));
    let Some(value) = wanted(host(), tunables_set, opt_out) else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let Some(argv0) = args.next() else { return };
    // Only returns on failure (no /proc, exec refused): carry on as we are.
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env("GLIBC_TUNABLES", value)
        .exec();
}

/// A line for the start-up log saying which copy routine is in use and why.
pub fn describe() -> String {
    let h = host();
    match std::env::var("GLIBC_TUNABLES") {
        Ok(v) if v == TUNABLE => format!(
            "memcpy: vector loop instead of REP MOVSB (AMD, glibc {}; {LYRE_MEMCPY}=glibc keeps \
             glibc's choice)",
            version_text(h.glibc)
        ),
        Ok(v) => format!("memcpy: GLIBC_TUNABLES={v} (set by the operator)"),
        Err(_) => format!("memcpy: glibc's choice (glibc {})", version_text(h.glibc)),
    }
}

fn version_text(v: Option<(u32, u32)>) -> String {
    v.map_or_else(|| "not in use".into(), |(a, b)| format!("{a}.{b}"))
}

#[cfg(target_arch = "x86_64")]
fn cpu_is_amd() -> bool {
    // CPUID leaf 0 (the vendor string) exists on every x86_64 CPU.
    let r = std::arch::x86_64::__cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&r.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&r.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&r.ecx.to_le_bytes());
    &vendor == b"AuthenticAMD"
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_is_amd() -> bool {
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> Option<(u32, u32)> {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) };
    parse_version(v.to_str().ok()?)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<(u32, u32)> {
    None
}

/// "2.36" -> (2, 36); "2.39.9000" -> (2, 39).
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_only_on_amd_with_old_glibc_and_no_operator_choice() {
        let amd_old = Host {
            amd: true,
            glibc: Some((2, 36)),
        };
        assert_eq!(wanted(amd_old, false, false), Some(TUNABLE));
        assert_eq!(
            wanted(amd_old, true, false),
            None,
            "operator's GLIBC_TUNABLES"
        );
        assert_eq!(wanted(amd_old, false, true), None, "LYRE_MEMCPY=glibc");
        let fixed = Host {
            amd: true,
            glibc: Some((2, 39)),
        };
        assert_eq!(wanted(fixed, false, false), None);
        let intel = Host {
            amd: false,
            glibc: Some((2, 36)),
        };
        assert_eq!(wanted(intel, false, false), None);
        let musl = Host {
            amd: true,
            glibc: None,
        };
        assert_eq!(wanted(musl, false, false), None);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.36"), Some((2, 36)));
        assert_eq!(parse_version("2.39.9000"), Some((2, 39)));
        assert_eq!(parse_version("x"), None);
        // This process runs on some glibc when built for gnu.
        if cfg!(target_env = "gnu") {
            assert!(glibc_version().is_some());
        }
    }
}
