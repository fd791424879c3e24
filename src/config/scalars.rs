//! Value parsers for the scalar `HP_*` variables: log level, verbosity, session lifetime,
//! ban counters and FRP certificate settings (harp-compat.md §2.1, §2.4, §2.5; H-09, H-10,
//! H-15). Pure functions of the string; the variable name is added by the caller.

use std::time::Duration;

use super::defaults::{MAX_FRP_CERT_VALIDITY_DAYS, MAX_SESSION_LIFETIME_SECS};
use super::LogLevel;

/// `HP_LOG_LEVEL`. HaRP's shell knows `debug|info|warning|error`, its agent the upper-case
/// Python names (`WARN`, `CRITICAL` too), any case. Lyre accepts the union; anything else
/// stops the start, as it stops HaRP's agent (harp-compat §2.1 quirk, kept: it is also
/// what a bad value must do).
pub fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    match s.to_ascii_lowercase().as_str() {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warning" | "warn" => Ok(LogLevel::Warning),
        "error" | "critical" => Ok(LogLevel::Error),
        _ => Err(format!(
            "unknown level '{s}'; use debug, info, warning or error"
        )),
    }
}

/// `HP_VERBOSE_START`: an integer, `1` = verbose start-up.
pub fn parse_verbose_start(s: &str) -> Result<bool, String> {
    s.trim()
        .parse::<i64>()
        .map(|n| n == 1)
        .map_err(|_| format!("must be an integer (1 = verbose, 0 = quiet), got '{s}'"))
}

/// `HP_SESSION_LIFETIME`: float seconds in `0..=10` (Python `float()`; NaN refused).
pub fn parse_session_lifetime(s: &str) -> Result<Duration, String> {
    let err = || {
        format!("must be a number of seconds between 0 and {MAX_SESSION_LIFETIME_SECS}, got '{s}'")
    };
    let secs: f64 = s.trim().parse().map_err(|_| err())?;
    if !(0.0..=MAX_SESSION_LIFETIME_SECS).contains(&secs) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `HP_BLACKLIST_COUNT` / `HP_BLACKLIST_WINDOW`: a whole number (Python `int()`: surrounding
/// whitespace and a `+` sign allowed). Negative values are refused: they would ban everyone.
pub fn parse_count(s: &str, what: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "must be a whole number of {what} (0 or more), got '{s}'"
        ));
    }
    digits.parse().map_err(|_| {
        format!(
            "must be a whole number of {what} up to {}, got '{s}'",
            u32::MAX
        )
    })
}

/// `HP_FRP_DISABLE_TLS`: only the exact string `true` disables TLS.
pub fn parse_disable_tls(s: &str) -> bool {
    s == "true"
}

/// `HP_FRP_CERT_VALIDITY_DAYS`: all digits and `>= 1` (HaRP), at most
/// [`MAX_FRP_CERT_VALIDITY_DAYS`] (Lyre).
pub fn parse_cert_validity_days(s: &str) -> Result<u32, String> {
    let err = || {
        format!("must be a whole number of days from 1 to {MAX_FRP_CERT_VALIDITY_DAYS}, got '{s}'")
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let days: u32 = s.parse().map_err(|_| err())?;
    if days == 0 || days > MAX_FRP_CERT_VALIDITY_DAYS {
        return Err(err());
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        let rows: &[(&str, Option<LogLevel>)] = &[
            ("debug", Some(LogLevel::Debug)),
            ("DEBUG", Some(LogLevel::Debug)),
            ("info", Some(LogLevel::Info)),
            ("INFO", Some(LogLevel::Info)),
            ("warning", Some(LogLevel::Warning)),
            ("WARN", Some(LogLevel::Warning)),
            ("error", Some(LogLevel::Error)),
            ("ERROR", Some(LogLevel::Error)),
            ("CRITICAL", Some(LogLevel::Error)),
            ("verbose", None),
            ("err", None),
            ("", None),
        ];
        for (input, want) in rows {
            assert_eq!(parse_log_level(input).ok(), *want, "{input}");
        }
    }

    #[test]
    fn h09_session_lifetime_range() {
        let ok = [
            ("0", 0.0),
            ("10", 10.0),
            ("3", 3.0),
            ("2.5", 2.5),
            (" 1 ", 1.0),
            ("+1e0", 1.0),
        ];
        for (input, secs) in ok {
            assert_eq!(
                parse_session_lifetime(input),
                Ok(Duration::from_secs_f64(secs)),
                "{input}"
            );
        }
        for bad in ["-1", "11", "10.01", "-0.5", "abc", "", "inf", "NaN", "3s"] {
            assert!(parse_session_lifetime(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_session_lifetime("11").unwrap_err(),
            "must be a number of seconds between 0 and 10, got '11'"
        );
    }

    #[test]
    fn h10_counts_are_integers() {
        for (input, n) in [("10", 10), (" 300 ", 300), ("+5", 5), ("0", 0), ("007", 7)] {
            assert_eq!(parse_count(input, "failures"), Ok(n), "{input}");
        }
        for bad in ["1.5", "abc", "", "-1", "1e3", "4294967296", "++1", "1 0"] {
            assert!(parse_count(bad, "failures").is_err(), "{bad}");
        }
    }

    #[test]
    fn h15_cert_validity_days() {
        for (input, n) in [("1", 1), ("5000", 5000), ("0365", 365)] {
            assert_eq!(parse_cert_validity_days(input), Ok(n), "{input}");
        }
        for bad in [
            "0",
            "abc",
            "",
            "-5",
            "+5",
            " 5",
            "1.5",
            "99999999999",
            "2500001",
        ] {
            assert!(parse_cert_validity_days(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn disable_tls_only_exact_true() {
        assert!(parse_disable_tls("true"));
        for other in ["TRUE", "True", "1", "yes", " true", ""] {
            assert!(!parse_disable_tls(other), "{other}");
        }
    }

    #[test]
    fn verbose_start() {
        assert_eq!(parse_verbose_start("1"), Ok(true));
        assert_eq!(parse_verbose_start("0"), Ok(false));
        assert_eq!(parse_verbose_start("2"), Ok(false));
        assert!(parse_verbose_start("yes").is_err());
    }
}
