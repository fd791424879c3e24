//! Pre-rendered answers (sozu style): the hot path writes static bytes, nothing is formatted.
//!
//! - `harp(status)`: HaRP's verdict answers, byte-exact as HAProxy renders HaRP's
//!   `http-request return status N content-type text/plain string "..."` (harp-compat.md §3):
//!   401/403/404/503 with bodies `401 Unauthorized`, `403 Forbidden`, `404 Not Found`,
//!   `503 Service Unavailable (HaRP)`; `content-type` then `content-length`; the connection
//!   is kept. `harp_close(status)` is the same answer with `connection: close`, for HTTP/1.0
//!   clients without keep-alive or connections the proxy closes afterwards.
//! - `proxy_error(status)`: proxy-level errors (400, 403, 404, 405, 408, 413, 431, 500, 501,
//!   502, 503, 504) as HAProxy 2.x/3.x sends its built-in pages (harp-compat.md §3.7, H-69):
//!   small HTML body, `content-length`, `cache-control: no-cache`, `content-type: text/html`,
//!   `connection: close`, lowercase names as HAProxy's H1 mux emits them. HAProxy has no
//!   built-in 431 page; ours follows the same pattern. The 501 text omits a stray leading `.`
//!   that some HAProxy versions print.
//! - `CONTINUE_100`: `HTTP/1.1 100 Continue\r\n\r\n`.
//! - `head_only(answer)`: the answer without its body, for HEAD requests.
//!
//! Every Content-Length below is checked by parsing the answer back (tests).

pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A HaRP text/plain verdict; `$close` is an extra header block (empty or `connection: close`).
macro_rules! harp_answer {
    ($status_line:literal, $len:literal, $body:literal, $close:literal) => {
        concat!(
            "HTTP/1.1 ",
            $status_line,
            "\r\ncontent-type: text/plain\r\ncontent-length: ",
            $len,
            "\r\n",
            $close,
            "\r\n",
            $body
        )
        .as_bytes()
    };
}

/// An HAProxy-style HTML error page, always closing the connection.
macro_rules! proxy_page {
    ($code:literal, $reason:literal, $len:literal, $text:literal) => {
        concat!(
            "HTTP/1.1 ",
            $code,
            " ",
            $reason,
            "\r\ncontent-length: ",
            $len,
            "\r\ncache-control: no-cache\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n",
            "<html><body><h1>",
            $code,
            " ",
            $reason,
            "</h1>\n",
            $text,
            "\n</body></html>\n"
        )
        .as_bytes()
    };
}

const HARP_401: &[u8] = harp_answer!("401 Unauthorized", 16, "401 Unauthorized", "");
const HARP_403: &[u8] = harp_answer!("403 Forbidden", 13, "403 Forbidden", "");
const HARP_404: &[u8] = harp_answer!("404 Not Found", 13, "404 Not Found", "");
const HARP_503: &[u8] = harp_answer!(
    "503 Service Unavailable",
    30,
    "503 Service Unavailable (HaRP)",
    ""
);
const HARP_401_CLOSE: &[u8] = harp_answer!(
    "401 Unauthorized",
    16,
    "401 Unauthorized",
    "connection: close\r\n"
);
const HARP_403_CLOSE: &[u8] = harp_answer!(
    "403 Forbidden",
    13,
    "403 Forbidden",
    "connection: close\r\n"
);
const HARP_404_CLOSE: &[u8] = harp_answer!(
    "404 Not Found",
    13,
    "404 Not Found",
    "connection: close\r\n"
);
const HARP_503_CLOSE: &[u8] = harp_answer!(
    "503 Service Unavailable",
    30,
    "503 Service Unavailable (HaRP)",
    "connection: close\r\n"
);

/// HaRP's verdict answer for `status` (401, 403, 404, 503), keeping the connection.
/// Any other status is a caller bug and gets the 503 `(HaRP)` answer, HaRP's own
/// "decision failed" reply (debug builds assert).
pub fn harp(status: u16) -> &'static [u8] {
    match status {
        401 => HARP_401,
        403 => HARP_403,
        404 => HARP_404,
        503 => HARP_503,
        _ => {
            debug_assert!(false, "no HaRP answer for status {status}");
            HARP_503
        }
    }
}

/// `harp(status)` plus `connection: close`.
pub fn harp_close(status: u16) -> &'static [u8] {
    match status {
        401 => HARP_401_CLOSE,
        403 => HARP_403_CLOSE,
        404 => HARP_404_CLOSE,
        503 => HARP_503_CLOSE,
        _ => {
            debug_assert!(false, "no HaRP answer for status {status}");
            HARP_503_CLOSE
        }
    }
}

/// The head of a pre-rendered answer (through the blank line), for replying to a HEAD
/// request: RFC 9110 §9.3.2 forbids the body, and sending it would desynchronise a
/// kept-alive client.
pub fn head_only(answer: &'static [u8]) -> &'static [u8] {
    match answer.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &answer[..i + 4],
        None => answer,
    }
}

/// The proxy's own error page for `status`; unknown statuses get the 500 page (debug builds
/// assert).
pub fn proxy_error(status: u16) -> &'static [u8] {
    match status {
        400 => proxy_page!(
            "400",
            "Bad request",
            90,
            "Your browser sent an invalid request."
        ),
        403 => proxy_page!(
            "403",
            "Forbidden",
            93,
            "Request forbidden by administrative rules."
        ),
        404 => proxy_page!("404", "Not Found", 83, "The resource could not be found."),
        405 => proxy_page!(
            "405",
            "Method Not Allowed",
            146,
            "A request was made of a resource using a request method not supported by that resource"
        ),
        408 => proxy_page!(
            "408",
            "Request Time-out",
            110,
            "Your browser didn't send a complete request in time."
        ),
        413 => proxy_page!(
            "413",
            "Payload Too Large",
            106,
            "The request entity exceeds the maximum allowed."
        ),
        431 => proxy_page!(
            "431",
            "Request Header Fields Too Large",
            117,
            "Your browser sent too large request headers."
        ),
        501 => proxy_page!(
            "501",
            "Not Implemented",
            135,
            "The server does not support the functionality required to fulfill the request."
        ),
        502 => proxy_page!(
            "502",
            "Bad Gateway",
            107,
            "The server returned an invalid or incomplete response."
        ),
        503 => proxy_page!(
            "503",
            "Service Unavailable",
            107,
            "No server is available to handle this request."
        ),
        504 => proxy_page!(
            "504",
            "Gateway Time-out",
            92,
            "The server didn't respond in time."
        ),
        _ => {
            debug_assert!(status == 500, "no proxy error page for status {status}");
            proxy_page!(
                "500",
                "Internal Server Error",
                97,
                "An internal server error occurred."
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_response, BodyFraming};

    /// Parse `answer` back and return (status, reason, content-type, body, keep_alive).
    fn parse_back(answer: &[u8]) -> (u16, Vec<u8>, Vec<u8>, Vec<u8>, bool) {
        let (head, len) = parse_response(answer, false)
            .expect("answer parses")
            .expect("answer is complete");
        let body = &answer[len..];
        assert_eq!(
            head.framing,
            BodyFraming::ContentLength(body.len() as u64),
            "content-length matches the body of {:?}",
            String::from_utf8_lossy(answer)
        );
        let content_type = head.header("content-type").expect("content-type").to_vec();
        (
            head.status,
            head.reason().to_vec(),
            content_type,
            body.to_vec(),
            head.keep_alive,
        )
    }

    #[test]
    fn harp_answers_are_exact() {
        // harp-compat.md §3 verdict table.
        let rows: &[(u16, &str, &str)] = &[
            (401, "Unauthorized", "401 Unauthorized"), // H-35, H-51
            (403, "Forbidden", "403 Forbidden"),       // H-52
            (404, "Not Found", "404 Not Found"),       // H-24, H-56
            (503, "Service Unavailable", "503 Service Unavailable (HaRP)"), // H-70
        ];
        for &(status, reason, body) in rows {
            for (answer, keep) in [(harp(status), true), (harp_close(status), false)] {
                let (s, r, ct, b, keep_alive) = parse_back(answer);
                assert_eq!(s, status);
                assert_eq!(r, reason.as_bytes());
                assert_eq!(ct, b"text/plain");
                assert_eq!(b, body.as_bytes());
                assert_eq!(keep_alive, keep, "status {status}");
            }
        }
        assert_eq!(
            harp(401),
            b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\n\
              content-length: 16\r\n\r\n401 Unauthorized"
        );
        assert_eq!(
            harp_close(503),
            &b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
               content-length: 30\r\nconnection: close\r\n\r\n503 Service Unavailable (HaRP)"[..]
        );
    }

    #[test]
    fn proxy_errors_parse_back_with_correct_length() {
        for status in [400, 403, 404, 405, 408, 413, 431, 500, 501, 502, 503, 504] {
            let answer = proxy_error(status);
            let (s, _reason, ct, body, keep_alive) = parse_back(answer);
            assert_eq!(s, status);
            assert_eq!(ct, b"text/html");
            assert!(!keep_alive, "{status} closes");
            let (head, _) = parse_response(answer, false).unwrap().unwrap();
            assert_eq!(head.header("cache-control"), Some(&b"no-cache"[..]));
            assert_eq!(head.header("connection"), Some(&b"close"[..]));
            let prefix = format!("<html><body><h1>{status} ");
            assert!(body.starts_with(prefix.as_bytes()), "{status}");
        }
    }

    #[test]
    fn haproxy_400_is_byte_exact() {
        assert_eq!(
            proxy_error(400),
            &b"HTTP/1.1 400 Bad request\r\ncontent-length: 90\r\ncache-control: no-cache\r\n\
               content-type: text/html\r\nconnection: close\r\n\r\n<html><body><h1>400 Bad \
               request</h1>\nYour browser sent an invalid request.\n</body></html>\n"[..]
        );
    }

    #[test]
    fn head_only_stops_at_the_blank_line() {
        for answer in [harp(404), harp_close(401), proxy_error(502)] {
            let head = head_only(answer);
            let (parsed, len) = parse_response(head, true).unwrap().unwrap();
            assert_eq!(len, head.len());
            assert_eq!(parsed.framing, BodyFraming::None);
            assert!(answer.starts_with(head) && answer.len() > head.len());
        }
        assert_eq!(head_only(CONTINUE_100), CONTINUE_100);
    }

    #[test]
    fn continue_is_a_bodiless_interim_response() {
        let (head, len) = parse_response(CONTINUE_100, false).unwrap().unwrap();
        assert_eq!((head.status, len), (100, CONTINUE_100.len()));
        assert_eq!(head.framing, BodyFraming::None);
    }
}
