use super::*;
use crate::http::test_rng::Rng;

const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

/// Feed `data` in pieces whose lengths come from `piece`; returns (consumed, done) where
/// consumed counts bytes accepted until done (the rest is the caller's).
fn feed(data: &[u8], mut piece: impl FnMut() -> usize) -> Result<(usize, bool), HeadError> {
    let mut scanner = ChunkedScanner::new();
    let mut at = 0;
    while at < data.len() {
        let end = (at + piece().max(1)).min(data.len());
        let progress = scanner.scan(&data[at..end])?;
        at += progress.consumed;
        if progress.done {
            assert!(scanner.is_done());
            return Ok((at, true));
        }
        assert_eq!(
            at, end,
            "a body that is not done consumes everything it is given"
        );
    }
    Ok((at, false))
}

fn whole(data: &[u8]) -> Result<(usize, bool), HeadError> {
    feed(data, || usize::MAX)
}

const VALID: &[&str] = &[
    "0\r\n\r\n",
    "5\r\nhello\r\n0\r\n\r\n",
    "A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
    "f\r\n0123456789abcde\r\nF\r\n0123456789abcde\r\n0\r\n\r\n",
    "0005\r\nhello\r\n0000\r\n\r\n",
    "0000000000000005\r\nhello\r\n0\r\n\r\n",
    "5;name=value\r\nhello\r\n0;last\r\n\r\n",
    "5 ; name\r\nhello\r\n0\r\n\r\n",
    "5\t;x\r\nhello\r\n0\r\n\r\n",
    "5;q=\"a;b\\\"c\"\r\nhello\r\n0\r\n\r\n",
    "5\r\nhe\r\nl\r\n0\r\n\r\n",
    "0\r\nX-Sum: 1\r\ny:2\r\nEmpty:\r\n\r\n",
    "3\r\nabc\r\n0\r\nTrailer-Field: obs-text \u{e9}\r\n\r\n",
];

#[test]
fn valid_bodies_end_exactly_before_the_pipelined_request() {
    for body in VALID {
        let mut stream = body.as_bytes().to_vec();
        stream.extend_from_slice(NEXT);
        assert_eq!(whole(&stream), Ok((body.len(), true)), "{body:?}");
        assert_eq!(
            feed(&stream, || 1),
            Ok((body.len(), true)),
            "{body:?} byte by byte"
        );
    }
}

#[test]
fn random_splits_of_concatenated_bodies() {
    let mut rng = Rng::new(42);
    for round in 0..500 {
        let body = VALID[round % VALID.len()].as_bytes();
        let mut stream = body.to_vec();
        stream.extend_from_slice(NEXT);
        let max_piece = 1 + rng.below(12);
        let mut rng2 = Rng::new(round as u64 + 7);
        let got = feed(&stream, || 1 + rng2.below(max_piece));
        assert_eq!(got, Ok((body.len(), true)), "{body:?} round {round}");
    }
}

#[test]
fn incomplete_body_is_not_done() {
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    for cut in 0..body.len() {
        assert_eq!(whole(&body[..cut]), Ok((cut, false)), "cut {cut}");
    }
}

#[test]
fn invalid_framing_table() {
    let rows: &[&str] = &[
        "\r\n",
        ";ext\r\n",
        " 5\r\n",
        "g\r\n",
        "-5\r\n",
        "+5\r\n",
        "0x5\r\n",
        "5 \r\nhello\r\n",
        "5 x\r\n",
        "00000000000000005\r\nhello\r\n",
        "8000000000000000\r\n",
        "ffffffffffffffff\r\n",
        "5\nhello\r\n",
        "5\r\rhello\r\n",
        "5;a\nhello\r\n",
        "5;a\x01\r\nhello\r\n",
        "5;a\x7f\r\nhello\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhelloX\r\n",
        "5\r\nhello\r\r\n",
        "5\r\nhello0\r\n\r\n",
        "0\r\n\n",
        "0\r\nX: a\n\r\n",
        "0\r\nX: a\r\r\n",
        "0\r\n folded\r\n\r\n",
        "0\r\nNoColon\r\n\r\n",
        "0\r\nBad Name: x\r\n\r\n",
        "0\r\n: empty name\r\n\r\n",
        "0\r\nX: a\x00b\r\n\r\n",
        "0\r\r\n",
    ];
    for body in rows {
        let got = whole(body.as_bytes());
        assert!(got.is_err(), "{body:?} must be rejected, got {got:?}");
        assert!(
            feed(body.as_bytes(), || 1).is_err(),
            "{body:?} byte by byte"
        );
        assert_eq!(got.unwrap_err().status(), 400);
    }
}

#[test]
fn errors_are_sticky() {
    let mut scanner = ChunkedScanner::new();
    assert!(scanner.scan(b"zz\r\n").is_err());
    assert!(scanner.scan(b"0\r\n\r\n").is_err());
}

#[test]
fn done_scanner_consumes_nothing_more() {
    let mut scanner = ChunkedScanner::new();
    assert_eq!(
        scanner.scan(b"0\r\n\r\n"),
        Ok(ChunkProgress {
            consumed: 5,
            done: true
        })
    );
    assert_eq!(
        scanner.scan(NEXT),
        Ok(ChunkProgress {
            consumed: 0,
            done: true
        })
    );
    assert_eq!(
        scanner.scan(b""),
        Ok(ChunkProgress {
            consumed: 0,
            done: true
        })
    );
}

#[test]
fn payload_can_be_skipped_without_scanning() {
    let mut scanner = ChunkedScanner::new();
    assert_eq!(scanner.payload_remaining(), 0);
    let progress = scanner.scan(b"400\r\nab").unwrap();
    assert_eq!(
        progress,
        ChunkProgress {
            consumed: 7,
            done: false
        }
    );
    assert_eq!(scanner.payload_remaining(), 0x400 - 2);
    scanner.skip_payload(0x100);
    assert_eq!(scanner.payload_remaining(), 0x400 - 2 - 0x100);
    scanner.skip_payload(0x400 - 2 - 0x100);
    assert_eq!(scanner.payload_remaining(), 0);
    // The CRLF after the payload is still checked.
    let progress = scanner.scan(b"\r\n0\r\n\r\nGET").unwrap();
    assert_eq!(
        progress,
        ChunkProgress {
            consumed: 7,
            done: true
        }
    );

    let mut scanner = ChunkedScanner::new();
    scanner.scan(b"3\r\n").unwrap();
    scanner.skip_payload(3);
    assert!(
        scanner.scan(b"X\r\n").is_err(),
        "missing CRLF after spliced payload"
    );
}

#[test]
fn huge_chunk_size_is_tracked_without_overflow() {
    let mut scanner = ChunkedScanner::new();
    scanner.scan(b"7fffffffffffffff\r\n").unwrap();
    assert_eq!(scanner.payload_remaining(), MAX_CHUNK_SIZE);
    let progress = scanner.scan(&[0u8; 1000]).unwrap();
    assert_eq!(progress.consumed, 1000);
    assert_eq!(scanner.payload_remaining(), MAX_CHUNK_SIZE - 1000);
}

#[test]
fn line_caps() {
    // A chunk-size line of exactly MAX_CHUNK_LINE_BYTES (CRLF included) is accepted.
    let ext_len = MAX_CHUNK_LINE_BYTES - "5;".len() - 2;
    let at_cap = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(ext_len));
    assert_eq!(whole(at_cap.as_bytes()), Ok((at_cap.len(), true)));
    let over = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(ext_len + 1));
    assert!(whole(over.as_bytes()).is_err());

    let value_len = MAX_CHUNK_LINE_BYTES - "X:".len() - 2;
    let at_cap = format!("0\r\nX:{}\r\n\r\n", "v".repeat(value_len));
    assert_eq!(whole(at_cap.as_bytes()), Ok((at_cap.len(), true)));
    let over = format!("0\r\nX:{}\r\n\r\n", "v".repeat(value_len + 1));
    assert!(whole(over.as_bytes()).is_err());

    // Many small trailer lines: the section total is capped too.
    let line = format!("X:{}\r\n", "v".repeat(1000));
    let fits = MAX_TRAILER_BYTES / line.len();
    let ok = format!("0\r\n{}\r\n", line.repeat(fits));
    assert_eq!(whole(ok.as_bytes()), Ok((ok.len(), true)));
    let too_much = format!("0\r\n{}\r\n", line.repeat(fits + 1));
    assert!(whole(too_much.as_bytes()).is_err());
}

#[test]
fn never_panics_on_random_input() {
    let mut rng = Rng::new(0xc0ffee);
    let alphabet = b"0123456789abcdefABCDEFxz;= \t\r\n:\"\\\x00\x7f\xff";
    for _ in 0..20_000 {
        let len = rng.below(120);
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let max_piece = 1 + rng.below(16);
        let mut scanner = ChunkedScanner::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + 1 + rng.below(max_piece)).min(input.len());
            if rng.below(4) == 0 && scanner.payload_remaining() > 0 {
                let n = scanner.payload_remaining().min((end - at) as u64);
                scanner.skip_payload(n);
                at += n as usize;
                continue;
            }
            match scanner.scan(&input[at..end]) {
                Ok(progress) => {
                    assert!(progress.consumed <= end - at);
                    at += progress.consumed;
                    if progress.done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
}

/// `decode` hands out exactly the payload, however the body is split and chunked, stops
/// where `scan` stops, and fails where `scan` fails.
#[test]
fn decode_yields_the_payload_in_any_split() {
    let mut rng = Rng::new(9);
    for round in 0..300 {
        let payload: Vec<u8> = (0..rng.below(3000))
            .map(|i| (i * 7 + round) as u8)
            .collect();
        let mut body = Vec::new();
        let mut at = 0;
        while at < payload.len() {
            let n = (1 + rng.below(700)).min(payload.len() - at);
            body.extend_from_slice(format!("{n:x};ext=1\r\n").as_bytes());
            body.extend_from_slice(&payload[at..at + n]);
            body.extend_from_slice(b"\r\n");
            at += n;
        }
        body.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        let mut stream = body.clone();
        stream.extend_from_slice(NEXT);
        let mut dec = ChunkedScanner::new();
        let (mut out, mut at) = (Vec::new(), 0);
        while !dec.is_done() {
            let end = (at + 1 + rng.below(200)).min(stream.len());
            at += dec
                .decode(&stream[at..end], &mut out)
                .expect("valid")
                .consumed;
        }
        assert_eq!(
            at,
            body.len(),
            "round {round}: stops before the next request"
        );
        assert_eq!(out, payload, "round {round}");
    }
    let mut dec = ChunkedScanner::new();
    let mut out = Vec::new();
    assert!(dec.decode(b"5\r\nhelloX\r\n", &mut out).is_err());
    assert_eq!(out, b"hello", "payload before the error was passed on");
}
