//! Path facts (harp-compat.md §3.3 steps 2-4, H-22/H-23/H-24/H-29/H-58): parent-directory
//! detection over the undecoded path, the app id, and the target path. Also the
//! `oc_sessionPassphrase` cookie (§3.1). All byte-level, nothing is URL-decoded.

use crate::http::cookie::cookie_value;

/// `/` or `%2F`/`%2f` at `i`: its length, else 0.
fn separator_len(path: &[u8], i: usize) -> usize {
    match path.get(i) {
        Some(b'/') => 1,
        Some(b'%')
            if path
                .get(i + 1..i + 3)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"2f")) =>
        {
            3
        }
        _ => 0,
    }
}

/// `.` or `%2E`/`%2e` at `i`: its length, else 0.
fn dot_len(path: &[u8], i: usize) -> usize {
    match path.get(i) {
        Some(b'.') => 1,
        Some(b'%')
            if path
                .get(i + 1..i + 3)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"2e")) =>
        {
            3
        }
        _ => 0,
    }
}

/// A `..` segment starts at `i` (any mix of encodings) and ends at a separator or the end.
fn parent_segment_at(path: &[u8], i: usize) -> bool {
    let first = dot_len(path, i);
    if first == 0 {
        return false;
    }
    let second = dot_len(path, i + first);
    if second == 0 {
        return false;
    }
    let end = i + first + second;
    end == path.len() || separator_len(path, end) > 0
}

/// §3.3 step 2: a segment of exactly two dots after start/`/`/`%2F`, followed by
/// `/`/`%2F`/end. `/a/...`, `/a/..b`, `/a/b..` do not count.
pub fn has_parent_segment(path: &[u8]) -> bool {
    if parent_segment_at(path, 0) {
        return true;
    }
    let mut i = 0;
    while i < path.len() {
        let sep = separator_len(path, i);
        if sep == 0 {
            i += 1;
            continue;
        }
        if parent_segment_at(path, i + sep) {
            return true;
        }
        i += sep;
    }
    false
}

/// §3.3 step 3: the first `exapps/` preceded by the start or `/` and followed by one or more
/// non-`/` bytes; returns those bytes (case preserved). Found anywhere in the path (quirk).
pub fn find_app_id(path: &[u8]) -> Option<&[u8]> {
    const NEEDLE: &[u8] = b"exapps/";
    let mut from = 0;
    while from + NEEDLE.len() <= path.len() {
        let off = path[from..]
            .windows(NEEDLE.len())
            .position(|w| w == NEEDLE)?;
        let at = from + off;
        let rest = &path[at + NEEDLE.len()..];
        let id_len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        if (at == 0 || path[at - 1] == b'/') && id_len > 0 {
            return Some(&rest[..id_len]);
        }
        from = at + 1;
    }
    None
}

/// §3.3 step 4: `path` minus the literal prefix `/exapps/<app_id>` when it starts with it;
/// otherwise the whole path (quirk: `/x/exapps/a/y` is forwarded as is).
pub fn target_path<'p>(path: &'p [u8], app_id: &[u8]) -> &'p [u8] {
    let prefix_len = b"/exapps/".len() + app_id.len();
    if path.starts_with(b"/exapps/") && path.get(8..prefix_len) == Some(app_id) {
        &path[prefix_len..]
    } else {
        path
    }
}

/// `oc_sessionPassphrase` from all `Cookie` header values in order: the last occurrence wins
/// (HAProxy `req.cook`, one implementation: [`crate::http::cookie::cookie_value`]); empty
/// if absent. Cookie names are case-sensitive.
pub fn find_pass_cookie<'a, I>(cookie_headers: I) -> &'a [u8]
where
    I: IntoIterator<Item = &'a [u8]>,
{
    cookie_headers
        .into_iter()
        .filter_map(|h| cookie_value(h, "oc_sessionPassphrase"))
        .last()
        .unwrap_or_default()
}

/// Split a request target at the first `?` into path and query (`Some(b"")` for a bare `?`).
pub fn split_target(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    }
}
