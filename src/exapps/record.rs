//! The ExApp metadata record (harp-compat.md §3.6, §4.2): JSON parsing with HaRP's lenient
//! field rules, validation, and the route regexes compiled once per record.
//!
//! Owns: [`ExAppRecord`], [`Route`], [`AccessLevel`], [`parse_record`]. Does not own the
//! cache (see `registry`) nor any Nextcloud I/O.
//!
//! Deviations, kept small and documented:
//! - route regexes are compiled with the `regex` crate as `^(?:<url>)` (Python `re.match`
//!   semantics). Python-only syntax (look-around, back-references) fails to compile here and
//!   the route is skipped, exactly like an invalid regex in HaRP.
//! - `port` must fit 0..=65535 (HaRP accepts any integer, which then fails at connect time).

use regex::bytes::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::ExAppsError;

/// Cap on the compiled size of one route regex. Routes come from AppAPI (trusted), the cap
/// only keeps one pathological pattern from eating a worker's memory.
pub const MAX_ROUTE_REGEX_BYTES: usize = 1 << 20;

/// Route access level: PUBLIC 0, USER 1, ADMIN 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessLevel {
    Public = 0,
    User = 1,
    Admin = 2,
}

impl AccessLevel {
    pub fn from_int(v: i64) -> Option<AccessLevel> {
        match v {
            0 => Some(AccessLevel::Public),
            1 => Some(AccessLevel::User),
            2 => Some(AccessLevel::Admin),
            _ => None,
        }
    }
}

/// One `routes[]` item. `regex` is `None` when `url` did not compile: the route is skipped.
#[derive(Debug, Clone)]
pub struct Route {
    pub url: String,
    pub access_level: AccessLevel,
    /// Response statuses that count as failures (§3.9). Values outside 100..=999 can never
    /// match a response and are kept only for fidelity.
    pub bruteforce_protection: Vec<i64>,
    pub regex: Option<Regex>,
}

impl Route {
    /// Python `re.match`: anchored at the start, not at the end.
    pub fn matches(&self, target_path: &[u8]) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(target_path))
    }
}

/// An ExApp's metadata as HaRP caches it.
#[derive(Debug, Clone)]
pub struct ExAppRecord {
    pub exapp_token: String,
    pub exapp_version: String,
    pub host: String,
    pub port: u16,
    pub routes: Vec<Route>,
    /// Memo of the resolved `host` (empty = not resolved yet). Accepted from JSON (quirk).
    pub resolved_host: String,
}

/// Compile `url` with `re.match` semantics. `None` if it does not compile.
pub fn compile_route(url: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{url})"))
        .size_limit(MAX_ROUTE_REGEX_BYTES)
        .build()
        .ok()
}

/// Parse and validate a record body. `InvalidJson` for bytes that are not JSON, `Schema` for
/// JSON of the wrong shape (the push endpoint maps them to 500 and 400, §4.2).
pub fn parse_record(body: &[u8]) -> Result<ExAppRecord, ExAppsError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ExAppsError::InvalidJson(e.to_string()))?;
    record_from_value(&value)
}

pub fn record_from_value(value: &Value) -> Result<ExAppRecord, ExAppsError> {
    let obj = value
        .as_object()
        .ok_or_else(|| schema("(record)", "expected a JSON object"))?;
    let port = required_int(obj, "port")?;
    let port = u16::try_from(port).map_err(|_| schema("port", "expected 0..=65535"))?;
    let routes = match obj.get("routes") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| route_from_value(i, v))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(schema("routes", "expected an array")),
    };
    Ok(ExAppRecord {
        exapp_token: required_str(obj, "exapp_token")?,
        exapp_version: header_safe("exapp_version", required_str(obj, "exapp_version")?)?,
        host: required_str(obj, "host")?,
        port,
        routes,
        resolved_host: optional_str(obj, "resolved_host")?,
    })
}

fn route_from_value(index: usize, value: &Value) -> Result<Route, ExAppsError> {
    let field = |name: &str| format!("routes[{index}].{name}");
    let obj = value
        .as_object()
        .ok_or_else(|| schema(&format!("routes[{index}]"), "expected an object"))?;
    let url = match obj.get("url") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(schema(&field("url"), "expected a string")),
        None => return Err(schema(&field("url"), "required")),
    };
    let level = match obj.get("access_level") {
        Some(v) => {
            lenient_int(v).ok_or_else(|| schema(&field("access_level"), "expected an integer"))?
        }
        None => return Err(schema(&field("access_level"), "required")),
    };
    let access_level = AccessLevel::from_int(level).ok_or_else(|| {
        schema(
            &field("access_level"),
            "expected 0 (PUBLIC), 1 (USER) or 2 (ADMIN)",
        )
    })?;
    let bruteforce_protection = match obj.get("bruteforce_protection") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                lenient_int(v)
                    .ok_or_else(|| schema(&field("bruteforce_protection"), "expected integers"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(schema(&field("bruteforce_protection"), "expected an array")),
    };
    Ok(Route {
        regex: compile_route(&url),
        url,
        access_level,
        bruteforce_protection,
    })
}

fn schema(field: &str, message: &str) -> ExAppsError {
    ExAppsError::Schema {
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// A value Lyre sends as a header field (`EX-APP-VERSION`): control characters (CR/LF
/// above all) would let a record inject header lines into requests to the ExApp.
fn header_safe(name: &str, value: String) -> Result<String, ExAppsError> {
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(schema(name, "must not contain control characters"));
    }
    Ok(value)
}

fn required_str(obj: &Map<String, Value>, name: &str) -> Result<String, ExAppsError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(schema(
            name,
            "expected a string (JSON numbers are rejected)",
        )),
        None => Err(schema(name, "required")),
    }
}

fn optional_str(obj: &Map<String, Value>, name: &str) -> Result<String, ExAppsError> {
    match obj.get(name) {
        None => Ok(String::new()),
        Some(_) => required_str(obj, name),
    }
}

pub(crate) fn required_int(obj: &Map<String, Value>, name: &str) -> Result<i64, ExAppsError> {
    match obj.get(name) {
        Some(v) => {
            lenient_int(v).ok_or_else(|| schema(name, "expected an integer or a numeric string"))
        }
        None => Err(schema(name, "required")),
    }
}

/// Pydantic-style lax integer: a JSON integer, a float with no fractional part, or a string
/// holding a decimal integer (surrounding whitespace and a sign allowed). Booleans rejected.
pub fn lenient_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => parse_decimal_int(s.as_bytes()),
        _ => None,
    }
}

/// Python `int(str)` for the shapes that matter here: optional surrounding whitespace,
/// optional `+`/`-`, ASCII digits with single `_` between digits.
pub fn parse_decimal_int(text: &[u8]) -> Option<i64> {
    let t = text.trim_ascii();
    let (negative, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || !digits[0].is_ascii_digit()
        || !digits[digits.len() - 1].is_ascii_digit()
    {
        return None;
    }
    let mut value: i64 = 0;
    let mut prev_underscore = false;
    for &b in digits {
        if b == b'_' {
            if prev_underscore {
                return None;
            }
            prev_underscore = true;
            continue;
        }
        prev_underscore = false;
        let d = i64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        value = value.checked_mul(10)?.checked_add(d)?;
    }
    Some(if negative { -value } else { value })
}
