//! Header-field semantics the proxy must get right: message framing (`Content-Length`,
//! `Transfer-Encoding`, RFC 9112 §6), connection options (`Connection`, `Upgrade`, `Expect`,
//! RFC 9110 §7.6.1, §7.8, §10.1.1) and `Host` (RFC 9112 §3.2). One pass over the headers
//! collects [`FieldFacts`]; `head.rs` turns them into a framing verdict per message kind.
//! Nothing here allocates.

/// Optional whitespace (RFC 9110 §5.6.3).
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `value` without leading and trailing SP / HTAB.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The non-empty elements of a comma-separated list (RFC 9110 §5.6.1: empty elements are
/// ignored), each trimmed of OWS. The tokens lists this module reads contain no quoted strings.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

/// What the framing- and connection-relevant headers of one message say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FieldFacts {
    /// At least one `Content-Length` header was present (valid or not).
    pub cl_seen: bool,
    /// The agreed `Content-Length` value when all present values are valid and equal.
    pub content_length: Option<u64>,
    /// Why the `Content-Length` values are unusable (invalid or differing).
    pub cl_error: Option<&'static str>,
    /// At least one `Transfer-Encoding` header was present.
    pub te_seen: bool,
    /// How many times the `chunked` coding was listed across all TE headers.
    pub chunked_count: u32,
    /// The last listed transfer coding is `chunked`.
    pub te_final_chunked: bool,
    pub conn_close: bool,
    pub conn_keep_alive: bool,
    pub conn_upgrade: bool,
    pub upgrade_header: bool,
    pub host_count: u32,
    /// `Expect: 100-continue` (case-insensitive).
    pub expect_continue: bool,
}

impl FieldFacts {
    /// Collect the facts from `(name, value)` pairs, in message order.
    pub(crate) fn collect<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut facts = FieldFacts::default();
        for (name, value) in fields {
            facts.add(name, value);
        }
        facts
    }

    fn add(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.add_content_length(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.add_transfer_encoding(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in list_items(value) {
                self.conn_close |= token.eq_ignore_ascii_case(b"close");
                self.conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                self.conn_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_header = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            self.host_count += 1;
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        }
    }

    /// RFC 9112 §6.3 rule 5: a list of identical values (`5, 5`) or identical repeated headers
    /// may be collapsed to one; anything else (differing values, signs, non-digits, empty
    /// elements, overflow) makes the framing ambiguous (CWE-444).
    fn add_content_length(&mut self, value: &[u8]) {
        self.cl_seen = true;
        if self.cl_error.is_some() {
            return;
        }
        for item in value.split(|&b| b == b',').map(trim_ows) {
            let parsed = match parse_decimal(item) {
                Some(n) => n,
                None => {
                    self.cl_error = Some("Content-Length is not a decimal number");
                    return;
                }
            };
            match self.content_length {
                Some(previous) if previous != parsed => {
                    self.content_length = None;
                    self.cl_error = Some("Content-Length values differ");
                    return;
                }
                _ => self.content_length = Some(parsed),
            }
        }
    }

    /// Transfer codings are read across all TE headers in order (RFC 9110 §5.3: repeated
    /// list headers concatenate). Only the exact token `chunked` counts as chunked, so
    /// `xchunked` or `chunked;x=1` are "some other coding".
    fn add_transfer_encoding(&mut self, value: &[u8]) {
        self.te_seen = true;
        for coding in list_items(value) {
            let chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked_count += u32::from(chunked);
            self.te_final_chunked = chunked;
        }
    }
}

/// 1*DIGIT as u64; `None` for empty input, any non-digit (signs, spaces, hex) or overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = &'static [(&'static str, &'static str)];

    fn facts(fields: &[(&str, &str)]) -> FieldFacts {
        FieldFacts::collect(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn trim_and_list_items() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        let items: Vec<&[u8]> = list_items(b" close ,, Upgrade,\tkeep-alive ,").collect();
        assert_eq!(items, vec![&b"close"[..], b"Upgrade", b"keep-alive"]);
    }

    #[test]
    fn decimal_parsing() {
        let rows: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("42", Some(42)),
            ("007", Some(7)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("99999999999999999999999", None),
            ("", None),
            ("+5", None),
            ("-1", None),
            ("5 ", None),
            ("0x5", None),
            ("5a", None),
        ];
        for (input, want) in rows {
            assert_eq!(parse_decimal(input.as_bytes()), *want, "input {input:?}");
        }
    }

    #[test]
    fn content_length_rules() {
        let rows: &[(Fields, Option<u64>, bool)] = &[
            (&[("Content-Length", "5")], Some(5), false),
            (
                &[("content-length", "5"), ("CONTENT-LENGTH", "5")],
                Some(5),
                false,
            ),
            (&[("Content-Length", "5, 5")], Some(5), false),
            (&[("Content-Length", "5, 6")], None, true),
            (
                &[("Content-Length", "5"), ("Content-Length", "6")],
                None,
                true,
            ),
            (&[("Content-Length", "5,")], None, true),
            (&[("Content-Length", "")], None, true),
            (&[("Content-Length", "+5")], None, true),
            (
                &[("Content-Length", "abc"), ("Content-Length", "5")],
                None,
                true,
            ),
        ];
        for (fields, want, error) in rows {
            let f = facts(fields);
            assert!(f.cl_seen);
            assert_eq!(
                f.content_length.filter(|_| f.cl_error.is_none()),
                *want,
                "{fields:?}"
            );
            assert_eq!(f.cl_error.is_some(), *error, "{fields:?}");
        }
    }

    #[test]
    fn transfer_encoding_rules() {
        let rows: &[(Fields, u32, bool)] = &[
            (&[("Transfer-Encoding", "chunked")], 1, true),
            (&[("transfer-encoding", "CHUNKED")], 1, true),
            (&[("Transfer-Encoding", "gzip, chunked")], 1, true),
            (
                &[
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked"),
                ],
                1,
                true,
            ),
            (&[("Transfer-Encoding", "chunked, identity")], 1, false),
            (&[("Transfer-Encoding", "xchunked")], 0, false),
            (&[("Transfer-Encoding", "chunked;x=1")], 0, false),
            (&[("Transfer-Encoding", "chunked, chunked")], 2, true),
            (&[("Transfer-Encoding", "")], 0, false),
        ];
        for (fields, count, final_chunked) in rows {
            let f = facts(fields);
            assert!(f.te_seen);
            assert_eq!(f.chunked_count, *count, "{fields:?}");
            assert_eq!(f.te_final_chunked, *final_chunked, "{fields:?}");
        }
    }

    #[test]
    fn connection_and_friends() {
        let f = facts(&[
            ("Connection", "Keep-Alive, UPGRADE"),
            ("Upgrade", "websocket"),
            ("Host", "a"),
            ("Expect", " 100-Continue "),
        ]);
        assert!(f.conn_keep_alive && f.conn_upgrade && !f.conn_close);
        assert!(f.upgrade_header && f.expect_continue);
        assert_eq!(f.host_count, 1);
        let f = facts(&[("Connection", "closed"), ("Expect", "100-continue-ish")]);
        assert!(!f.conn_close && !f.expect_continue);
    }
}
