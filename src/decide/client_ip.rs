//! Client IP (harp-compat.md §3.2, H-66/H-67): the TCP peer, unless the peer is a trusted
//! proxy; then the left-most `X-Forwarded-For` element, else `X-Real-IP`, else the peer.
//! Keeps HaRP's left-most choice (spoofable when the proxy appends, §8 item 4): it is what
//! operators configured their proxies for.

use std::net::IpAddr;

use ipnet::IpNet;

use super::HeaderLookup;

/// The client address HaRP bans and counts failures against. The peer is canonicalised
/// (`::ffff:a.b.c.d` -> `a.b.c.d`) so a dual-stack listener keys IPv4 clients like HAProxy.
pub fn client_ip<H: HeaderLookup + ?Sized>(peer: IpAddr, headers: &H, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    let from_xff = headers
        .header("x-forwarded-for")
        .and_then(|v| v.split(|&b| b == b',').next())
        .and_then(parse_ip);
    from_xff
        .or_else(|| headers.header("x-real-ip").and_then(parse_ip))
        .unwrap_or(peer)
}

/// Parse one IP literal (surrounding whitespace ignored); anything else is `None`.
pub fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(text.trim_ascii()).ok()?.parse().ok()
}
