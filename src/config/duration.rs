//! HAProxy time syntax for the `HP_TIMEOUT_*` variables (harp-compat.md §2.2, H-12..H-14).
//!
//! A value is decimal digits plus an optional unit `us`, `ms`, `s`, `m`, `h`, `d`; a bare
//! number is milliseconds. Units are lower case, there is no sign, no fraction and no
//! compound form (`1m30s`), exactly as HAProxy's own parser. HAProxy only warns about trailing
//! characters after the unit; Lyre rejects them so a typo cannot silently change a timeout.

use std::time::Duration;

use super::defaults::{MAX_TIMEOUT_MS, UNLIMITED_TIMEOUT};

/// Parse one HAProxy duration (`30s`, `1800`, `500us`, `2h`).
pub fn parse_haproxy_duration(s: &str) -> Result<Duration, String> {
    let digits_end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if digits_end == 0 {
        return Err(format!(
            "expected a number with an optional unit us/ms/s/m/h/d (bare number = milliseconds), got '{s}'"
        ));
    }
    let (digits, unit) = s.split_at(digits_end);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("number too large in '{s}'"))?;
    let too_large = || format!("duration too large: '{s}'");
    let duration = match unit {
        "" | "ms" => Duration::from_millis(value),
        "us" => Duration::from_micros(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(too_large)?),
        "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(too_large)?),
        "d" => Duration::from_secs(value.checked_mul(86_400).ok_or_else(too_large)?),
        _ => {
            return Err(format!(
            "unknown unit '{unit}' in '{s}': use us, ms, s, m, h or d (bare number = milliseconds)"
        ))
        }
    };
    Ok(duration)
}

/// Parse an `HP_TIMEOUT_*` value as HAProxy applies it: whole milliseconds (sub-millisecond
/// parts are dropped), at most 2^31-1 ms, and zero (`0`, `0s`, even `500us`) means "never",
/// mapped to 24 days like HaRP's start script does for the tunnel timeout.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let duration = parse_haproxy_duration(s)?;
    let ms = duration.as_millis();
    if ms > u128::from(MAX_TIMEOUT_MS) {
        return Err(format!(
            "'{s}' is above HAProxy's maximum of {MAX_TIMEOUT_MS} ms (~24.8 days); use 0 for unlimited"
        ));
    }
    if ms == 0 {
        return Ok(UNLIMITED_TIMEOUT);
    }
    // invariant: ms <= MAX_TIMEOUT_MS, which fits u64.
    Ok(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn haproxy_duration_table() {
        let ok: &[(&str, Duration)] = &[
            ("30s", S(30)),
            ("1800", MS(1800)),
            ("1800ms", MS(1800)),
            ("500us", Duration::from_micros(500)),
            ("2m", S(120)),
            ("3h", S(3 * 3600)),
            ("24d", S(24 * 86_400)),
            ("0", Duration::ZERO),
            ("007s", S(7)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_haproxy_duration(input).as_ref(), Ok(want), "{input}");
        }
        let bad = [
            "",
            "s",
            "-5s",
            "+5s",
            "1.5s",
            "5 s",
            "5S",
            "5sec",
            "1m30s",
            "5mm",
            "5u",
            "abc",
            "99999999999999999999999",
            "999999999999999999d",
        ];
        for input in bad {
            assert!(
                parse_haproxy_duration(input).is_err(),
                "{input} should fail"
            );
        }
    }

    #[test]
    fn timeouts_map_zero_to_unlimited_and_cap_at_haproxy_max() {
        for zero in ["0", "0s", "0ms", "0us", "0m", "0h", "0d", "00", "999us"] {
            assert_eq!(parse_timeout(zero), Ok(UNLIMITED_TIMEOUT), "{zero}");
        }
        assert_eq!(parse_timeout("1500us"), Ok(MS(1)));
        assert_eq!(parse_timeout("2147483647"), Ok(MS(2_147_483_647)));
        assert!(parse_timeout("2147483648").is_err());
        assert!(parse_timeout("25d").is_err());
        assert_eq!(parse_timeout("24d"), Ok(S(24 * 86_400)));
    }
}
