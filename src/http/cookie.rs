//! Cookie lookup with HAProxy `req.cook(<name>)` semantics, which HaRP uses to read
//! `oc_sessionPassphrase` (harp-compat.md §3.1 `pass_cookie`). Owns only the lookup in one
//! `Cookie` header value; `RequestHead::cookie` applies it across all `Cookie` headers.
//!
//! Rules (as HAProxy's request-side cookie extraction):
//! - pairs are separated by `;` and also by `,` (request cookies are parsed as a list);
//! - spaces and tabs around names, `=` and values are ignored;
//! - the name compares case-sensitively; a pair without `=` and names starting with `$`
//!   (RFC 2965 attributes) are skipped;
//! - a value may be a quoted string, whose `;`/`,` do not end it; quotes are kept;
//! - the LAST occurrence wins. An empty value is returned as `Some(b"")`: HaRP treats an
//!   empty passphrase like an absent one, so callers should too.
//!
//! Budget: one pass over the header value, no allocation.

/// The value of the last cookie called `name` in one `Cookie` header value.
pub fn cookie_value<'a>(cookie_header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut found = None;
    let mut rest = cookie_header;
    while !rest.is_empty() {
        let (pair, next) = split_pair(rest);
        rest = next;
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let pair_name = trim(&pair[..eq]);
        if pair_name.first() == Some(&b'$') {
            continue;
        }
        if pair_name == name.as_bytes() {
            found = Some(trim(&pair[eq + 1..]));
        }
    }
    found
}

/// Split off one `name=value` pair: up to the first `;` or `,` outside double quotes.
/// Returns (pair, remainder after the delimiter).
fn split_pair(input: &[u8]) -> (&[u8], &[u8]) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in input.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b';' || b == b',' {
            return (&input[..i], &input[i + 1..]);
        }
    }
    (input, &[])
}

fn trim(s: &[u8]) -> &[u8] {
    super::fields::trim_ows(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let p = "oc_sessionPassphrase";
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("oc_sessionPassphrase=abc", p, Some("abc")),
            ("a=1; oc_sessionPassphrase=abc; b=2", p, Some("abc")),
            (
                "oc_sessionPassphrase=first; oc_sessionPassphrase=last",
                p,
                Some("last"),
            ),
            ("a=1;oc_sessionPassphrase=x", p, Some("x")),
            (
                "  oc_sessionPassphrase  =  spaced  ; b=2",
                p,
                Some("spaced"),
            ),
            ("a=1, oc_sessionPassphrase=comma", p, Some("comma")),
            ("oc_sessionPassphrase=v,w", p, Some("v")),
            ("oc_sessionpassphrase=lower", p, None),
            ("xoc_sessionPassphrase=no", p, None),
            ("oc_sessionPassphrase", p, None),
            ("oc_sessionPassphrase=", p, Some("")),
            ("oc_sessionPassphrase=\"q;u,o\"; b=2", p, Some("\"q;u,o\"")),
            ("$oc_sessionPassphrase=attr", "$oc_sessionPassphrase", None),
            ("a=\"unterminated; oc_sessionPassphrase=hidden", p, None),
            (
                "nc_session_id=1; oc_sessionPassphrase=a%2Bb%3D",
                p,
                Some("a%2Bb%3D"),
            ),
            ("", p, None),
            (";;;", p, None),
        ];
        for (header, name, want) in rows {
            assert_eq!(
                cookie_value(header.as_bytes(), name),
                want.map(str::as_bytes),
                "header {header:?}"
            );
        }
    }
}
