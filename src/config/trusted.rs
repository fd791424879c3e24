//! `HP_TRUSTED_PROXY_IPS` (harp-compat.md §2.3, H-11): the proxies whose forwarding headers
//! may name the client. Invalid entries never stop the start (HaRP 0.4.3 fixed a bug where one
//! bad entry disabled the whole list); they only produce warnings, with a budget per category.
//!
//! Networks parse like Python's `ipaddress.ip_network`: a bare address is a /32 or /128, the
//! IPv4 mask may be a prefix length, a netmask (`255.0.0.0`) or a host mask (`0.255.255.255`),
//! and host bits are masked with a warning (the agent's non-strict retry).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::defaults::{MAX_ECHOED_VALUE_CHARS, TRUSTED_PROXY_WARNINGS_PER_CATEGORY};
use super::names::HP_TRUSTED_PROXY_IPS;

/// The quote characters the agent strips from both ends of each entry.
const QUOTES: &[char] = &['\'', '"', '\u{201C}', '\u{201D}', '\u{2018}', '\u{2019}'];

/// Parse the whole value. Warnings (at most [`TRUSTED_PROXY_WARNINGS_PER_CATEGORY`] per
/// category, then a summary) are appended to `warnings`.
pub fn parse_trusted_proxies(raw: &str, warnings: &mut Vec<String>) -> Vec<IpNet> {
    let mut quoted = Budget::default();
    let mut masked = Budget::default();
    let mut invalid = Budget::default();
    let mut nets = Vec::new();
    for item in raw.split(',') {
        let trimmed = item.trim();
        let entry = trimmed.trim_matches(QUOTES).trim();
        if entry.is_empty() {
            continue;
        }
        if entry != trimmed {
            quoted.note(warnings, || {
                format!("{HP_TRUSTED_PROXY_IPS}: removed quotes around '{entry}' (write entries without quotes)")
            });
        }
        match parse_ip_network(entry) {
            Some((net, false)) => nets.push(net),
            Some((net, true)) => {
                masked.note(warnings, || {
                    format!("{HP_TRUSTED_PROXY_IPS}: '{entry}' has host bits set; using {net} (write the network address)")
                });
                nets.push(net);
            }
            None => invalid.note(warnings, || {
                format!("{HP_TRUSTED_PROXY_IPS}: ignoring invalid entry '{entry}' (expected an IP address or a network such as 10.0.0.0/8)")
            }),
        }
    }
    quoted.summarize(warnings, "more entries had quotes removed");
    masked.summarize(warnings, "more entries had host bits masked");
    invalid.summarize(warnings, "more invalid entries were ignored");
    if nets.is_empty() && !raw.trim().is_empty() {
        warnings.push(format!(
            "{HP_TRUSTED_PROXY_IPS}: no valid entry in '{}': header-based client IP detection is disabled, every client is its TCP peer address",
            truncate_chars(raw, MAX_ECHOED_VALUE_CHARS)
        ));
    }
    nets
}

/// Counts log lines of one category and stops emitting them past the budget.
#[derive(Default)]
struct Budget {
    seen: usize,
}

impl Budget {
    fn note(&mut self, warnings: &mut Vec<String>, line: impl FnOnce() -> String) {
        self.seen += 1;
        if self.seen <= TRUSTED_PROXY_WARNINGS_PER_CATEGORY {
            warnings.push(line());
        }
    }

    fn summarize(&self, warnings: &mut Vec<String>, what: &str) {
        if let Some(extra) = self.seen.checked_sub(TRUSTED_PROXY_WARNINGS_PER_CATEGORY) {
            if extra > 0 {
                warnings.push(format!("{HP_TRUSTED_PROXY_IPS}: {extra} {what}"));
            }
        }
    }
}

/// `s` cut to `max` characters, with `...` appended when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// Parse one network. Returns the network with host bits cleared and whether any host bit
/// had to be cleared; `None` if even the non-strict parse fails.
pub fn parse_ip_network(s: &str) -> Option<(IpNet, bool)> {
    let (addr_part, mask_part) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: IpAddr = addr_part.parse().ok()?;
    let max_len: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match mask_part {
        None => max_len,
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            // Python's int() accepts leading zeros (`/008`); u32 parsing fails on overflow.
            let significant = m.trim_start_matches('0');
            let len: u32 = if significant.is_empty() {
                0
            } else {
                significant.parse().ok()?
            };
            u8::try_from(len).ok().filter(|l| *l <= max_len)?
        }
        Some(m) if addr.is_ipv4() => ipv4_mask_prefix(m)?,
        Some(_) => return None,
    };
    let net = IpNet::new(addr, prefix).ok()?;
    let clean = net.trunc();
    Some((clean, clean.addr() != addr))
}

/// Prefix length of an IPv4 netmask (`255.255.0.0`) or, failing that, host mask (`0.0.255.255`).
fn ipv4_mask_prefix(m: &str) -> Option<u8> {
    let mask = u32::from(m.parse::<Ipv4Addr>().ok()?);
    // Contiguous = ones then zeros; 0.0.0.0 is the /0 netmask, as in Python.
    let contiguous = |bits: u32| bits.leading_ones() + bits.trailing_zeros() == 32;
    if contiguous(mask) {
        return u8::try_from(mask.leading_ones()).ok();
    }
    let inverted = !mask;
    contiguous(inverted).then(|| inverted.leading_ones() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test literal")
    }

    #[test]
    fn network_table() {
        let rows: &[(&str, Option<(&str, bool)>)] = &[
            ("10.0.0.0/8", Some(("10.0.0.0/8", false))),
            ("10.0.0.1", Some(("10.0.0.1/32", false))),
            ("192.168.100.20/24", Some(("192.168.100.0/24", true))),
            ("10.0.0.0/255.0.0.0", Some(("10.0.0.0/8", false))),
            ("10.0.0.0/0.255.255.255", Some(("10.0.0.0/8", false))),
            ("10.1.0.0/255.0.0.0", Some(("10.0.0.0/8", true))),
            ("10.0.0.0/008", Some(("10.0.0.0/8", false))),
            ("0.0.0.0/0", Some(("0.0.0.0/0", false))),
            ("10.0.0.0/000", Some(("0.0.0.0/0", true))),
            ("::1", Some(("::1/128", false))),
            ("fd00::1/64", Some(("fd00::/64", true))),
            ("::ffff:1.2.3.4", Some(("::ffff:1.2.3.4/128", false))),
            ("10.0.0.0/33", None),
            ("10.0.0.0/", None),
            ("10.0.0.0/8/8", None),
            ("10.0.0.0/+8", None),
            ("10.0.0.0/255.0.255.0", None),
            ("fd00::/ffff::", None),
            ("fd00::/129", None),
            ("010.0.0.1", None),
            ("1.2.3", None),
            ("bogus", None),
            ("10.0.0.0/99999999999999999999999", None),
        ];
        for (input, want) in rows {
            let got = parse_ip_network(input);
            let want = want.map(|(n, m)| (net(n), m));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn h11_quotes_host_bits_and_bogus() {
        let mut w = Vec::new();
        let nets = parse_trusted_proxies("'10.0.0.0/8', 192.168.1.5/24 ,bogus", &mut w);
        assert_eq!(nets, vec![net("10.0.0.0/8"), net("192.168.1.0/24")]);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("quotes") && w[0].contains("10.0.0.0/8"));
        assert!(w[1].contains("host bits") && w[1].contains("192.168.1.0/24"));
        assert!(w[2].contains("invalid") && w[2].contains("bogus"));
    }

    #[test]
    fn unicode_quotes_and_empty_items_are_skipped() {
        let mut w = Vec::new();
        let nets = parse_trusted_proxies(
            "\u{201C}10.0.0.1\u{201D}, ,\u{2018}\u{2019},\"'::1'\"",
            &mut w,
        );
        assert_eq!(nets, vec![net("10.0.0.1/32"), net("::1/128")]);
        assert_eq!(w.len(), 2, "{w:?}");
        let mut w = Vec::new();
        assert!(parse_trusted_proxies("", &mut w).is_empty());
        assert!(parse_trusted_proxies("  ", &mut w).is_empty());
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn warning_budget_is_five_per_category_then_a_summary() {
        let raw: Vec<String> = (0..8).map(|i| format!("bad{i}")).collect();
        let mut w = Vec::new();
        assert!(parse_trusted_proxies(&raw.join(","), &mut w).is_empty());
        assert_eq!(w.len(), 5 + 1 + 1, "{w:?}");
        assert!(w[4].contains("bad4"));
        assert_eq!(
            w[5],
            "HP_TRUSTED_PROXY_IPS: 3 more invalid entries were ignored"
        );
        assert!(
            w[6].contains("no valid entry")
                && w[6].contains("header-based client IP detection is disabled")
        );
    }

    #[test]
    fn nothing_valid_echo_is_truncated_to_200_chars() {
        let raw = "x".repeat(300);
        let mut w = Vec::new();
        parse_trusted_proxies(&raw, &mut w);
        let last = w.last().expect("an error line");
        assert!(
            last.contains(&format!("'{}...'", "x".repeat(200))),
            "{last}"
        );
        assert!(!last.contains(&"x".repeat(201)));
        assert_eq!(truncate_chars("é".repeat(3).as_str(), 2), "éé...");
        assert_eq!(truncate_chars("ab", 2), "ab");
    }
}
