//! Pure parts of the Nextcloud client: URL parsing, request bytes (H-28, H-47), header
//! filtering, appId encoding, chunked decoding. Socket behaviour is tested against a fake
//! Nextcloud in tests/nextcloud_client.rs.

use std::sync::Arc;

use super::*;
use crate::config::Secret;

fn target(host_header: &str, prefix: &str) -> Arc<NcTarget> {
    Arc::new(NcTarget {
        host: "nc".into(),
        port: 80,
        host_header: host_header.into(),
        meta_path: format!("{prefix}/index.php/apps/app_api/harp/exapp-meta"),
        user_info_path: format!("{prefix}/index.php/apps/app_api/harp/user-info"),
        shared_key: Secret::new("k3y".into()),
        tls: None,
    })
}

#[test]
fn parse_url_rows() {
    // (url, https, host, port, host header, path)
    let ok = [
        ("http://nc", false, "nc", 80, "nc", ""),
        (
            "https://Cloud.Example.com/",
            true,
            "cloud.example.com",
            443,
            "cloud.example.com",
            "/",
        ),
        (
            "http://nc:8080/sub/x",
            false,
            "nc",
            8080,
            "nc:8080",
            "/sub/x",
        ),
        ("http://nc:80/p", false, "nc", 80, "nc", "/p"),
        ("https://nc:443", true, "nc", 443, "nc", ""),
        (
            "HTTP://10.0.0.5:81",
            false,
            "10.0.0.5",
            81,
            "10.0.0.5:81",
            "",
        ),
        (
            "http://[::1]:9000/a",
            false,
            "::1",
            9000,
            "[::1]:9000",
            "/a",
        ),
        ("https://[fe80::1]", true, "fe80::1", 443, "[fe80::1]", ""),
    ];
    for (url, https, host, port, hh, path) in ok {
        let got = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let want = ParsedUrl {
            https,
            host: host.into(),
            port,
            host_header: hh.into(),
            path: path.into(),
        };
        assert_eq!(got, want, "{url}");
    }
    let bad = [
        "nc.local",
        "ftp://nc",
        "http://",
        "http://nc:0",
        "http://nc:99999",
        "http://nc:x",
        "http://user:pw@nc",
        "http://nc/?a=b",
        "http://nc/#f",
        "http://nc/a b",
        "http://[::1",
        "http://[zz]:80",
        "http://n c",
    ];
    for url in bad {
        let err = parse_url(url).expect_err(url).to_string();
        assert!(err.contains("NC_INSTANCE_URL"), "{url}: {err}");
    }
}

#[test]
fn h28_meta_request_bytes() {
    let c = NcClient::from_target(target("nc:8080", "/sub"));
    let req = String::from_utf8(c.meta_request("my_app")).expect("ascii");
    let want = format!(
        "GET /sub/index.php/apps/app_api/harp/exapp-meta?appId=my_app HTTP/1.1\r\n\
         host: nc:8080\r\nuser-agent: lyre/{}\r\naccept: */*\r\n\
         accept-encoding: identity\r\nharp-shared-key: k3y\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(req, want);
}

#[test]
fn app_id_is_percent_encoded() {
    let c = NcClient::from_target(target("nc", ""));
    for (id, enc) in [
        ("a-b.c_d~9", "a-b.c_d~9"),
        ("a b&c=d", "a%20b%26c%3Dd"),
        ("x/y?z#", "x%2Fy%3Fz%23"),
        ("é", "%C3%A9"),
        ("%", "%25"),
    ] {
        let req = c.meta_request(id);
        let line =
            String::from_utf8_lossy(&req[..req.iter().position(|&b| b == b'\r').unwrap_or(0)])
                .into_owned();
        assert_eq!(
            line,
            format!("GET /index.php/apps/app_api/harp/exapp-meta?appId={enc} HTTP/1.1"),
            "{id}"
        );
    }
}

#[test]
fn h47_user_info_forwards_headers_minus_host_and_length() {
    let c = NcClient::from_target(target("nc", ""));
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b"Host", b"public.example"),
        (b"Cookie", b"oc_sessionPassphrase=p1; a=b"),
        (b"content-length", b"0"),
        (b"X-Forwarded-For", b"1.2.3.4"),
        (b"harp-shared-key", b"forged"),
        (b"cookie", b"oc_sessionPassphrase=p2"),
        (b"Authorization", b"Basic dTpw"),
        (b"Accept-Encoding", b"gzip, br"),
        (b"Connection", b"keep-alive"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"websocket"),
        (b"bad name", b"x"),
        (b"x-inject", b"a\r\nevil: 1"),
        (b"User-Agent", b"Mozilla/5.0"),
    ];
    let req = String::from_utf8(c.user_info_request("app", &headers)).expect("ascii");
    let want = "GET /index.php/apps/app_api/harp/user-info?appId=app HTTP/1.1\r\n\
                host: nc\r\n\
                cookie: oc_sessionPassphrase=p2\r\n\
                x-forwarded-for: 1.2.3.4\r\n\
                authorization: Basic dTpw\r\n\
                user-agent: Mozilla/5.0\r\n\
                accept-encoding: identity\r\n\
                harp-shared-key: k3y\r\n\r\n";
    assert_eq!(req, want);
}

#[test]
fn shared_key_absent_from_errors_and_debug() {
    let c = NcClient::from_target(target("nc", ""));
    assert!(!format!("{:?}", c.target()).contains("k3y"));
    let errs = [
        NcError::Timeout(DEFAULT_TOTAL_TIMEOUT),
        NcError::Closed,
        NcError::Protocol("x".into()),
        NcError::Tls("x".into()),
        NcError::BodyTooLarge(DEFAULT_MAX_BODY),
    ];
    for e in errs {
        let s = e.to_string();
        assert!(s.contains("NC_INSTANCE_URL") && !s.contains("k3y"), "{s}");
    }
}

/// Decode `wire` fed in pieces of `step` bytes.
fn dechunk(wire: &[u8], step: usize, cap: usize) -> Result<(Vec<u8>, usize), NcError> {
    let mut d = Dechunker::new(cap);
    let mut out = Vec::new();
    let mut used = 0;
    for piece in wire.chunks(step) {
        let n = d.feed(piece, &mut out)?;
        used += n;
        if d.is_done() {
            return Ok((out, used));
        }
        assert_eq!(n, piece.len(), "an unfinished body uses all input");
    }
    Err(NcError::Closed)
}

#[test]
fn dechunker_rows() {
    let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\nNEXT";
    for step in [1, 2, 3, 7, 64] {
        let (body, used) = dechunk(wire, step, 100).expect("valid");
        assert_eq!(body, b"hello  world", "step {step}");
        assert_eq!(&wire[..used], &wire[..wire.len() - 4], "stops before NEXT");
    }
    let bad: [&[u8]; 4] = [
        b"x\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"2\r\nabc\r\n",
        b"-1\r\n",
    ];
    for wire in bad {
        assert!(
            matches!(dechunk(wire, 1, 100), Err(NcError::Protocol(_))),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    assert!(matches!(
        dechunk(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 4, 8),
        Err(NcError::BodyTooLarge(8))
    ));
    assert!(matches!(dechunk(b"5\r\nhel", 2, 8), Err(NcError::Closed)));
}
