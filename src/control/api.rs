//! The control API reached as `/exapps/app_api/<path>` with the shared key (harp-compat.md
//! §4): health, info, the ExApp metadata cache and the FRP login plugin. Pure: it returns
//! the reply ([`ControlReply`], `control::reply`) and the state updates to publish; the proxy
//! owns the sockets.

use serde_json::Value;

use super::reply::ControlReply;
use crate::config::Secret;
use crate::exapps::{parse_push, Lookup, State, StateUpdate};

/// The HaRP version Lyre reports on `/info`: AppAPI requires a full `x.y.z` >= 0.3.0 and
/// enables features by it, so Lyre reports the HaRP release whose behaviour it implements.
pub const HARP_COMPAT_VERSION: &str = "0.4.4";
/// aiohttp's default request body limit, kept by HaRP (H-103).
pub const MAX_CONTROL_BODY_BYTES: u64 = 1024 * 1024;
/// `/heartbeat` body, byte for byte what aiohttp's `json_response({"status": "ok"})` sends
/// (harp-compat §4.1); also answered by the admin listener.
pub const HEARTBEAT_BODY: &str = r#"{"status": "ok"}"#;

/// A control request, already authenticated by the decision (shared key checked).
pub struct ControlRequest<'a> {
    pub method: &'a [u8],
    /// Path after `/exapps/app_api`, without the query.
    pub path: &'a [u8],
    pub body: &'a [u8],
}

/// What the endpoints may read.
pub struct ControlCtx<'a> {
    pub state: &'a State,
    pub shared_key: &'a Secret,
    pub now_ms: u64,
}

/// Serve one of the in-process endpoints; `None` = not one of them (the caller tries the
/// Docker wrappers, then answers 404).
pub fn handle(
    req: &ControlRequest<'_>,
    ctx: &ControlCtx<'_>,
) -> Option<(ControlReply, Vec<StateUpdate>)> {
    let get = matches!(req.method, b"GET" | b"HEAD");
    let none = Vec::new();
    let reply = match req.path {
        b"/heartbeat" if get => ControlReply::json(200, HEARTBEAT_BODY),
        b"/heartbeat" => ControlReply::method_not_allowed("GET, HEAD"),
        b"/info" if get => ControlReply::json(200, info_body()),
        b"/info" => ControlReply::method_not_allowed("GET, HEAD"),
        b"/frp_handler" if req.method == b"POST" => return Some(frp_login(req.body, ctx)),
        b"/frp_handler" => ControlReply::method_not_allowed("POST"),
        p if p.starts_with(b"/exapp_storage/") => return Some(exapp_storage(req, ctx)),
        p if is_k8s_wrapper(p) => kubernetes_disabled(req),
        _ => return None,
    };
    Some((reply, none))
}

/// HaRP's Kubernetes wrappers live under this path (harp-compat.md §4.5).
const K8S_PREFIX: &[u8] = b"/k8s/exapp/";
/// The wrappers HaRP has there (any other path under it is a 404, as in HaRP).
const K8S_ACTIONS: [&[u8]; 8] = [
    b"exists",
    b"create",
    b"start",
    b"stop",
    b"wait_for_start",
    b"remove",
    b"install_certificates",
    b"expose",
];

fn is_k8s_wrapper(path: &[u8]) -> bool {
    path.strip_prefix(K8S_PREFIX)
        .is_some_and(|action| K8S_ACTIONS.contains(&action))
}
/// What HaRP answers on them while its Kubernetes backend is off (its default).
pub const K8S_DISABLED: &str = "Kubernetes backend is disabled in HaRP.";

/// Lyre has no Kubernetes backend: its wrappers answer as HaRP's do with the backend off
/// (H-86): 503 with HaRP's text. `install_certificates` has no Kubernetes precondition in
/// HaRP: it validates the payload and answers 204 (a no-op). `expose` with
/// `expose_type=manual`, which HaRP also serves without the backend, is answered 503 too:
/// AppAPI calls it only for a Kubernetes daemon, which Lyre cannot be.
fn kubernetes_disabled(req: &ControlRequest<'_>) -> ControlReply {
    let action = &req.path[K8S_PREFIX.len()..];
    if req.method != b"POST" {
        return ControlReply::method_not_allowed("POST");
    }
    if action == b"install_certificates" {
        return match crate::docker::parse_certs(req.body) {
            Ok(_) => ControlReply::no_content(),
            Err(e) => ControlReply::text(400, e.message()),
        };
    }
    ControlReply::text(503, K8S_DISABLED)
}

fn info_body() -> String {
    format!(
        r#"{{"version":"{HARP_COMPAT_VERSION}","docker":true,"kubernetes":{{"enabled":false}}}}"#
    )
}

/// §4.2: POST stores a record (204 / 400 schema / 500 not JSON), DELETE removes it (204/404).
fn exapp_storage(
    req: &ControlRequest<'_>,
    ctx: &ControlCtx<'_>,
) -> (ControlReply, Vec<StateUpdate>) {
    let id = &req.path[b"/exapp_storage/".len()..];
    let Ok(id) = std::str::from_utf8(id) else {
        return (ControlReply::not_found(), Vec::new());
    };
    if id.is_empty() || id.contains('/') {
        return (ControlReply::not_found(), Vec::new());
    }
    match req.method {
        b"POST" => match parse_push(id, req.body) {
            Ok(update) => (ControlReply::no_content(), vec![update]),
            Err(rejected) if rejected.status() == 400 => {
                (ControlReply::text(400, "400: Bad Request"), Vec::new())
            }
            Err(_) => (
                ControlReply::text(500, "500 Internal Server Error"),
                Vec::new(),
            ),
        },
        b"DELETE" => {
            let id_lc = id.to_lowercase();
            match ctx.state.registry.lookup(&id_lc, ctx.now_ms) {
                Lookup::Found(_) => (
                    ControlReply::no_content(),
                    vec![StateUpdate::Delete { app_id_lc: id_lc }],
                ),
                _ => (ControlReply::not_found(), Vec::new()),
            }
        }
        _ => (ControlReply::method_not_allowed("DELETE, POST"), Vec::new()),
    }
}

/// §4.3: frps's Login plugin call. Banned -> reject; right `metas.token` -> accept; wrong ->
/// failure recorded for the client IP and 400.
fn frp_login(body: &[u8], ctx: &ControlCtx<'_>) -> (ControlReply, Vec<StateUpdate>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (ControlReply::text(400, "400: Bad Request"), Vec::new());
    };
    let content = &v["content"];
    let Some(address) = content["client_address"].as_str() else {
        return (ControlReply::text(400, "400: Bad Request"), Vec::new());
    };
    // HaRP cuts at the first ':' (IPv6 addresses break: quirk kept).
    let ip = address.split(':').next().unwrap_or_default().to_string();
    if ctx.state.bans.is_banned(&ip, ctx.now_ms) {
        return (
            ControlReply::json(200, r#"{"reject":true,"reject_reason":"banned"}"#),
            Vec::new(),
        );
    }
    let Some(metas) = content.get("metas").filter(|m| m.is_object()) else {
        return (
            ControlReply::text(500, "500 Internal Server Error"),
            Vec::new(),
        );
    };
    let token = metas["token"].as_str().unwrap_or_default();
    if ctx.shared_key.matches(token.as_bytes()) {
        return (
            ControlReply::json(200, r#"{"reject":false,"unchange":true}"#),
            Vec::new(),
        );
    }
    let failure = StateUpdate::Failure {
        ip,
        at_ms: ctx.now_ms,
    };
    (ControlReply::text(400, "400: Bad Request"), vec![failure])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_state() -> (State, Secret) {
        (State::new(3000, 10, 300_000), Secret::new("k3y".into()))
    }

    fn call(
        method: &[u8],
        path: &[u8],
        body: &[u8],
        st: &State,
        key: &Secret,
    ) -> (ControlReply, Vec<StateUpdate>) {
        let ctx = ControlCtx {
            state: st,
            shared_key: key,
            now_ms: 1000,
        };
        handle(&ControlRequest { method, path, body }, &ctx).expect("known endpoint")
    }

    #[test]
    fn h86_kubernetes_wrappers_answer_as_with_the_backend_disabled() {
        let (st, key) = ctx_state();
        let (r, ups) = call(b"POST", b"/k8s/exapp/create", b"{}", &st, &key);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (503, K8S_DISABLED.as_bytes())
        );
        assert!(ups.is_empty());
        let certs = br#"{"name": "app", "install_frp_certs": true}"#;
        assert_eq!(
            call(
                b"POST",
                b"/k8s/exapp/install_certificates",
                certs,
                &st,
                &key
            )
            .0
            .status,
            204
        );
        let bad = call(b"POST", b"/k8s/exapp/install_certificates", b"[", &st, &key).0;
        assert_eq!(bad.status, 400);
        assert_eq!(
            call(b"GET", b"/k8s/exapp/exists", b"", &st, &key).0.status,
            405
        );
        let ctx = ControlCtx {
            state: &st,
            shared_key: &key,
            now_ms: 1000,
        };
        let unknown = ControlRequest {
            method: b"POST",
            path: b"/k8s/exapp/bogus",
            body: b"",
        };
        assert!(
            handle(&unknown, &ctx).is_none(),
            "unknown wrapper: 404 as in HaRP"
        );
    }

    #[test]
    fn h39_info_reports_version_string() {
        let (st, key) = ctx_state();
        let (r, _) = call(b"GET", b"/info", b"", &st, &key);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["version"], "0.4.4");
        assert_eq!(v["docker"], true);
        assert_eq!(v["kubernetes"]["enabled"], false);
        assert_eq!(r.content_type, crate::control::reply::CONTENT_TYPE_JSON);
    }

    #[test]
    fn h40_heartbeat_and_h104_wrong_method() {
        let (st, key) = ctx_state();
        assert_eq!(
            call(b"GET", b"/heartbeat", b"", &st, &key).0.body,
            br#"{"status": "ok"}"#
        );
        let (r, _) = call(b"POST", b"/heartbeat", b"", &st, &key);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
        let ctx = ControlCtx {
            state: &st,
            shared_key: &key,
            now_ms: 0,
        };
        assert!(handle(
            &ControlRequest {
                method: b"GET",
                path: b"/nope",
                body: b""
            },
            &ctx
        )
        .is_none());
    }

    #[test]
    fn h31_h32_h34_exapp_storage() {
        let (mut st, key) = ctx_state();
        let rec = br#"{"exapp_token":"s","exapp_version":"1.0","host":"127.0.0.1","port":23000,"routes":[]}"#;
        let (r, ups) = call(b"POST", b"/exapp_storage/MyApp", rec, &st, &key);
        assert_eq!(r.status, 204);
        assert!(r
            .render(true, false)
            .starts_with(b"HTTP/1.1 204 No Content\r\n\r\n"));
        for u in ups {
            st.apply(u);
        }
        let bad = br#"{"exapp_token":"s","exapp_version":1,"host":"h","port":1}"#;
        assert_eq!(
            call(b"POST", b"/exapp_storage/x", bad, &st, &key).0.status,
            400
        );
        assert_eq!(
            call(b"POST", b"/exapp_storage/x", b"", &st, &key).0.status,
            500
        );
        let (r, ups) = call(b"DELETE", b"/exapp_storage/myapp", b"", &st, &key);
        assert_eq!((r.status, ups.len()), (204, 1));
        for u in ups {
            st.apply(u);
        }
        assert_eq!(
            call(b"DELETE", b"/exapp_storage/myapp", b"", &st, &key)
                .0
                .body,
            b"404: Not Found"
        );
    }

    #[test]
    fn h95_frp_login_plugin() {
        let (mut st, key) = ctx_state();
        let body = |t: &str| {
            format!(
                r#"{{"op":"Login","content":{{"metas":{{"token":"{t}"}},"client_address":"10.1.2.3:4000"}}}}"#
            )
        };
        let (r, ups) = call(b"POST", b"/frp_handler", body("k3y").as_bytes(), &st, &key);
        assert_eq!(
            (r.status, r.body.as_slice(), ups.len()),
            (200, &br#"{"reject":false,"unchange":true}"#[..], 0)
        );
        let (r, ups) = call(b"POST", b"/frp_handler", body("bad").as_bytes(), &st, &key);
        assert_eq!((r.status, ups.len()), (400, 1));
        for i in 0..10 {
            st.bans.record("10.1.2.3", 900 + i);
        }
        let (r, _) = call(b"POST", b"/frp_handler", body("k3y").as_bytes(), &st, &key);
        assert_eq!(r.body, br#"{"reject":true,"reject_reason":"banned"}"#);
        assert_eq!(
            call(b"POST", b"/frp_handler", b"nope", &st, &key).0.status,
            400
        );
        assert_eq!(call(b"GET", b"/frp_handler", b"", &st, &key).0.status, 405);
    }
}
