//! Which Docker Engine requests AppAPI may send straight through (harp-compat.md §4.6,
//! H-71..H-73). Pure; the proxy forwards allowed requests and answers 403 otherwise.
//!
//! Rules, as HaRP's HAProxy ACLs apply them: the path (query cut off) is URL-decoded and
//! matched case-insensitively; patterns are anchored at the start only, after an optional
//! API version prefix `/v<digits and dots>`:
//!
//! | method         | path                                            |
//! |----------------|-------------------------------------------------|
//! | GET, HEAD      | `/_ping` (whole path)                           |
//! | GET, HEAD      | `/images/<anything>/json...`                    |
//! | GET, HEAD      | `/containers/nc_app_[A-Za-z0-9_.-]+/json...`    |
//! | GET, HEAD      | `/containers/nc_app_[A-Za-z0-9_.-]+/logs...`    |
//! | POST           | `/images/create...`                             |
//!
//! Deliberate deviation (safe): a decoded path with a `..` segment is refused. HaRP would
//! forward `POST /images/create/../../containers/create`, and only the engine's router
//! cleaning saves it; AppAPI never sends dot segments.

/// Is `method raw_path` allowed through to the engine? `raw_path` is the request target
/// after `/exapps/app_api` was stripped; a query string is ignored.
pub fn passthrough_allowed(method: &[u8], raw_path: &[u8]) -> bool {
    let path_end = raw_path
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(raw_path.len());
    let mut path = percent_decode(&raw_path[..path_end]);
    path.make_ascii_lowercase();
    if path.split(|&b| b == b'/').any(|seg| seg == b"..") {
        return false;
    }
    let rest = strip_version(&path);
    match method {
        b"GET" | b"HEAD" => rest == b"/_ping" || is_image_json(rest) || is_container_path(rest),
        b"POST" => rest.starts_with(b"/images/create"),
        _ => false,
    }
}

/// `(/v[\d.]+)?` at the start: strip it if present.
fn strip_version(path: &[u8]) -> &[u8] {
    let Some(after_v) = path.strip_prefix(b"/v") else {
        return path;
    };
    let digits = after_v
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    if digits == 0 {
        return path;
    }
    // The regex could also fall back to the unversioned reading, but no allowed path starts
    // with `/v`, so the versioned reading is the only one that can match.
    &after_v[digits..]
}

/// `/images/.*/json`: anything (even slashes) between `/images/` and a later `/json`.
fn is_image_json(rest: &[u8]) -> bool {
    let Some(tail) = rest.strip_prefix(b"/images/") else {
        return false;
    };
    tail.windows(5).any(|w| w == b"/json")
}

/// `/containers/nc_app_[a-z0-9_.-]+/(json|logs)` with anything after.
fn is_container_path(rest: &[u8]) -> bool {
    let Some(tail) = rest.strip_prefix(b"/containers/nc_app_") else {
        return false;
    };
    let name_len = tail
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        .count();
    if name_len == 0 {
        return false;
    }
    let after = &tail[name_len..];
    after.starts_with(b"/json") || after.starts_with(b"/logs")
}

/// `%XX` decoding; malformed escapes stay as they are.
fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h71_h72_h73_allow_list() {
        let rows: &[(&str, &str, &str, bool)] = &[
            ("H-71", "GET", "/v1.44/_ping", true),
            ("H-71", "HEAD", "/_ping", true),
            ("H-71", "GET", "/_ping?x=1", true),
            ("H-71", "GET", "/_pingx", false),
            ("H-71", "POST", "/_ping", false),
            (
                "H-72",
                "GET",
                "/v1.44/images/ghcr.io/nextcloud/app:1.0/json",
                true,
            ),
            ("H-72", "HEAD", "/images/x/json", true),
            ("H-72", "GET", "/images/json", false),
            ("H-72", "GET", "/v1.44/containers/nc_app_llm2/json", true),
            (
                "H-72",
                "GET",
                "/v1.44/containers/nc_app_llm2/logs?stdout=true&stderr=true&tail=all",
                true,
            ),
            ("H-72", "GET", "/containers/nc_app_a.b-c_d/json", true),
            ("H-72", "GET", "/containers/nc_app_/json", false),
            ("H-72", "GET", "/containers/other/json", false),
            ("H-72", "GET", "/containers/json", false),
            ("H-72", "POST", "/containers/create", false),
            ("H-72", "POST", "/containers/nc_app_x/start", false),
            ("H-72", "DELETE", "/images/x", false),
            ("H-72", "DELETE", "/containers/nc_app_x/json", false),
            (
                "H-72",
                "POST",
                "/v1.44/images/create?fromImage=ghcr.io%2Fnextcloud%2Fapp&tag=1",
                true,
            ),
            ("H-72", "GET", "/images/create", false),
            ("H-72", "PUT", "/images/create", false),
            ("H-72", "GET", "/v/_ping", false),
            ("H-72", "GET", "/version", false),
            ("H-72", "POST", "/exec/abc/start", false),
            ("H-73", "GET", "/V1.44/_PING", true),
            ("H-73", "GET", "/Containers/NC_APP_X/JSON", true),
            ("H-73", "GET", "/v1.44/%5fping", true),
            ("H-73", "GET", "/containers/nc_app_x%2Fjson", true),
            ("H-73", "POST", "/%69mages/create", true),
            ("H-73", "GET", "/containers/nc_app_x%2Fstart", false),
            ("H-73", "GET", "/%zz_ping", false),
            (
                "dot-segments",
                "POST",
                "/images/create/../../containers/create",
                false,
            ),
            (
                "dot-segments",
                "GET",
                "/containers/nc_app_x/json/%2E%2E/%2e%2e/other",
                false,
            ),
        ];
        for (id, method, path, want) in rows {
            assert_eq!(
                passthrough_allowed(method.as_bytes(), path.as_bytes()),
                *want,
                "{id}: {method} {path}"
            );
        }
    }

    #[test]
    fn percent_decoding() {
        let rows: &[(&str, &[u8])] = &[
            ("a%20b", b"a b"),
            ("%", b"%"),
            ("%4", b"%4"),
            ("%4g", b"%4g"),
            ("%41%42", b"AB"),
        ];
        for (raw, want) in rows {
            assert_eq!(percent_decode(raw.as_bytes()), *want, "{raw}");
        }
    }
}
