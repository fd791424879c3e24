//! The one control-API answer type and its serializer (harp-compat.md §4): the in-process
//! endpoints (`control::api`), the Docker wrappers (`crate::docker`), the admin listener
//! (`control`) and the proxy's control dispatcher all build a [`ControlReply`] and write
//! [`ControlReply::render`]'s bytes. Owns no sockets and no routing.
//!
//! Byte layout (aiohttp's, as HaRP's agent answered): status line, then for every status but
//! 204 `content-type` and `content-length`, then the extra headers in order (e.g. `allow` on
//! a 405), then `connection: close` when the connection will not be kept, then the body
//! (omitted for HEAD).

/// aiohttp's JSON content type.
pub const CONTENT_TYPE_JSON: &str = "application/json; charset=utf-8";
/// aiohttp's text content type.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";

/// A control answer, rendered by [`ControlReply::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlReply {
    pub status: u16,
    /// Empty for 204: no content headers are written for it.
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Written after `content-length`, in this order (`allow` for a 405).
    pub extra_headers: Vec<(&'static str, String)>,
}

impl ControlReply {
    /// `body` is JSON text already.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self::with_body(status, CONTENT_TYPE_JSON, body.into().into_bytes())
    }

    /// `value` serialised compactly (serde_json's `Display`).
    pub fn json_value(status: u16, value: &serde_json::Value) -> Self {
        Self::json(status, value.to_string())
    }

    pub fn text(status: u16, message: impl Into<String>) -> Self {
        Self::with_body(status, CONTENT_TYPE_TEXT, message.into().into_bytes())
    }

    pub fn with_body(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        ControlReply {
            status,
            content_type,
            body,
            extra_headers: Vec::new(),
        }
    }

    pub fn no_content() -> Self {
        Self::with_body(204, "", Vec::new())
    }

    pub fn not_found() -> Self {
        Self::text(404, "404: Not Found")
    }

    /// 405 with the `allow` header (H-104).
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut reply = Self::text(405, "405: Method Not Allowed");
        reply.extra_headers.push(("allow", allow.to_string()));
        reply
    }

    /// The value of extra header `name` (exact, lower-case), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.extra_headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The full HTTP/1.1 response.
    pub fn render(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        if self.status != 204 {
            out.extend_from_slice(format!("content-type: {}\r\n", self.content_type).as_bytes());
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        for (name, value) in &self.extra_headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact bytes per shape: these are what AppAPI and health checks read.
    #[test]
    fn render_bytes() {
        let rows: &[(ControlReply, bool, bool, &[u8])] = &[
            (
                ControlReply::json(200, r#"{"status":"ok"}"#),
                true,
                false,
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n\
                  content-length: 15\r\n\r\n{\"status\":\"ok\"}",
            ),
            (
                ControlReply::json_value(201, &serde_json::json!({"id": "x"})),
                false,
                false,
                b"HTTP/1.1 201 Created\r\ncontent-type: application/json; charset=utf-8\r\n\
                  content-length: 10\r\nconnection: close\r\n\r\n{\"id\":\"x\"}",
            ),
            (
                ControlReply::method_not_allowed("GET, HEAD"),
                true,
                false,
                b"HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain; charset=utf-8\r\n\
                  content-length: 23\r\nallow: GET, HEAD\r\n\r\n405: Method Not Allowed",
            ),
            (
                ControlReply::no_content(),
                false,
                false,
                b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
            ),
            (
                ControlReply::not_found(),
                true,
                true,
                b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\n\
                  content-length: 14\r\n\r\n",
            ),
            (
                ControlReply::text(599, "x"),
                true,
                false,
                b"HTTP/1.1 599 Unknown\r\ncontent-type: text/plain; charset=utf-8\r\n\
                  content-length: 1\r\n\r\nx",
            ),
        ];
        for (reply, keep_alive, head_only, want) in rows {
            let got = reply.render(*keep_alive, *head_only);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn header_lookup() {
        let r = ControlReply::method_not_allowed("POST");
        assert_eq!((r.header("allow"), r.header("x")), (Some("POST"), None));
    }
}
