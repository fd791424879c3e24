//! The control stream: Login checks, LoginResp, the AES-CFB message loop (NewProxy,
//! CloseProxy, Ping) and teardown (frp-protocol §4, §5.2, §6, §8, sequence §9).
//!
//! Login is accepted when (1) the peer IP is not banned, (2) `metas.token` equals
//! `HP_SHARED_KEY` (constant time) and (3) `privilege_key` is frps's proof for the empty
//! `auth.token` HaRP runs with. That is exactly what HaRP's frps + login plugin check
//! (§4.4), with the same error strings frpc then logs.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::{ListenerOpts, TcpListener};

use super::channel::{Channel, MSG_READ_CHUNK_BYTES};
use super::crypto::{self, CfbReader, CfbWriter};
use super::msg::{self, CloseProxy, Login, LoginResp, MsgType, NewProxy, NewProxyResp, Pong};
use super::registry::{Control, Killer, Proxy, MAX_POOL_COUNT};
use super::{work, FrpContext, FrpError};

/// Version string we report in LoginResp (frpc only uses run_id and error).
pub const SERVER_VERSION: &str = "0.65.0";
/// Without tcpMux frpc pings every 30 s; frps gives up after 90 s of silence (§8.1).
pub const RAW_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a re-login waits for the old control with the same run_id to free its ports.
pub const REPLACE_TIMEOUT: Duration = Duration::from_secs(5);

/// HaRP's answers (frps's words for its plugin and token checks, §4.1, §4.4).
pub const ERR_BANNED: &str = "banned";
pub const ERR_BAD_SHARED_KEY: &str = "send Login request to plugin error";
pub const ERR_BAD_PRIVILEGE_KEY: &str = "token in login doesn't match token from configuration";

/// Why a Login is refused; `None` = accept.
pub fn check_login(ctx: &FrpContext, login: &Login, peer: SocketAddr) -> Option<&'static str> {
    if ctx.bans.is_banned(peer.ip()) {
        return Some(ERR_BANNED);
    }
    let token = login
        .metas
        .get("token")
        .map(String::as_bytes)
        .unwrap_or_default();
    if !ctx.shared_key.matches(token) {
        ctx.bans.record_failure(peer.ip());
        return Some(ERR_BAD_SHARED_KEY);
    }
    let want = crypto::privilege_key(b"", login.timestamp);
    if !constant_time_eq(want.as_bytes(), login.privilege_key.as_bytes()) {
        ctx.bans.record_failure(peer.ip());
        return Some(ERR_BAD_PRIVILEGE_KEY);
    }
    None
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn random_run_id() -> String {
    crypto::random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serve one control from its Login to teardown. `rest` = bytes read past the Login.
pub async fn serve_control(
    ctx: Rc<FrpContext>,
    ch: Channel,
    login_body: Vec<u8>,
    rest: Vec<u8>,
    peer: SocketAddr,
    killer: Killer,
) -> Result<(), FrpError> {
    let login: Login = msg::parse_body(MsgType::Login, &login_body)?;
    if let Some(reason) = check_login(&ctx, &login, peer) {
        tracing::warn!(%peer, reason, "frp login refused");
        let mut out = Vec::new();
        let resp = LoginResp {
            version: SERVER_VERSION.into(),
            error: reason.into(),
            ..Default::default()
        };
        msg::write_msg(&mut out, MsgType::LoginResp, &resp);
        ch.write_all(&out).await?;
        ch.close();
        return Ok(());
    }
    let run_id = if login.run_id.is_empty() {
        random_run_id()
    } else {
        login.run_id.clone()
    };
    replace_old_control(&ctx, &run_id).await;
    let writer = CfbWriter::new(&ctx.key);
    let control = Rc::new(Control::new(
        run_id.clone(),
        peer,
        login.pool_count.max(1),
        writer,
        killer,
    ));
    ctx.registry.borrow_mut().insert_control(control.clone());
    control.mark_authenticated();
    let mut out = Vec::new();
    let resp = LoginResp {
        version: SERVER_VERSION.into(),
        run_id: run_id.clone(),
        ..Default::default()
    };
    msg::write_msg(&mut out, MsgType::LoginResp, &resp);
    // LoginResp goes out in plaintext and complete before any ciphertext (§5.2).
    let r = async {
        ch.write_all(&out).await?;
        // frps: min(pool_count, 5) up front (none for poolCount = 0; a user connection
        // then asks for one).
        for _ in 0..login.pool_count.min(MAX_POOL_COUNT) {
            control.send(MsgType::ReqWorkConn, &msg::Empty {});
        }
        tracing::info!(%peer, run_id, worker = ctx.worker(), "frp client logged in");
        monoio::select! {
            r = read_loop(&ctx, &control, &ch, rest) => r,
            r = write_loop(&control, &ch) => r,
            _ = control.closing.wait() => Ok(()),
        }
    }
    .await;
    teardown(&ctx, &control);
    tracing::info!(%peer, run_id, "frp client session ended");
    r
}

/// frps's re-login rule (§4.2): close the old control with this run_id and wait until its
/// proxies are gone, so the reconnecting client gets its port back at once.
async fn replace_old_control(ctx: &FrpContext, run_id: &str) {
    let old = ctx.registry.borrow().control(run_id);
    if let Some(old) = old {
        old.kill();
        let _ = crate::runtime::time::limit(REPLACE_TIMEOUT, old.done.wait()).await;
    }
}

fn teardown(ctx: &FrpContext, control: &Rc<Control>) {
    control.closing.fire();
    let proxies = std::mem::take(&mut *control.proxies.borrow_mut());
    let mut reg = ctx.registry.borrow_mut();
    for p in &proxies {
        reg.remove_proxy(p);
    }
    reg.remove_control(control);
    drop(reg);
    control.clear_pool();
    control.kill();
    control.done.fire();
}

async fn write_loop(control: &Control, ch: &Channel) -> Result<(), FrpError> {
    loop {
        let chunk = std::mem::take(&mut *control.outbox.borrow_mut());
        if chunk.is_empty() {
            control.outbox_ready.wait().await;
            continue;
        }
        ch.write_all(&chunk).await?;
    }
}

async fn read_loop(
    ctx: &Rc<FrpContext>,
    control: &Rc<Control>,
    ch: &Channel,
    rest: Vec<u8>,
) -> Result<(), FrpError> {
    let mut reader = CfbReader::new(&ctx.key);
    let mut plain: Vec<u8> = Vec::with_capacity(MSG_READ_CHUNK_BYTES);
    let mut raw = rest;
    let mut chunk = vec![0u8; MSG_READ_CHUNK_BYTES];
    loop {
        plain.extend_from_slice(reader.open(&mut raw));
        let mut start = 0;
        while let Some(f) = msg::parse_frame(&plain[start..])? {
            let (ty, body) = (f.ty, f.body.to_vec());
            start += f.len;
            handle_msg(ctx, control, ty, &body).await?;
        }
        plain.drain(..start);
        let n = if ch.is_mux() {
            ch.read(&mut chunk).await?
        } else {
            crate::runtime::time::limit(RAW_HEARTBEAT_TIMEOUT, ch.read(&mut chunk))
                .await
                .map_err(|_| FrpError::Timeout("no Ping within the 90 s heartbeat timeout"))??
        };
        if n == 0 {
            return Ok(());
        }
        raw = chunk[..n].to_vec();
    }
}

async fn handle_msg(
    ctx: &Rc<FrpContext>,
    control: &Rc<Control>,
    ty: MsgType,
    body: &[u8],
) -> Result<(), FrpError> {
    match ty {
        MsgType::NewProxy => {
            let req: NewProxy = msg::parse_body(ty, body)?;
            let resp = new_proxy(ctx, control, &req);
            if !resp.error.is_empty() {
                tracing::warn!(peer = %control.peer, proxy = req.proxy_name, error = resp.error, "frp proxy refused");
            }
            control.send(MsgType::NewProxyResp, &resp);
        }
        MsgType::CloseProxy => {
            let req: CloseProxy = msg::parse_body(ty, body)?;
            let mut proxies = control.proxies.borrow_mut();
            if let Some(i) = proxies.iter().position(|p| p.name == req.proxy_name) {
                let p = proxies.remove(i);
                ctx.registry.borrow_mut().remove_proxy(&p);
            }
        }
        MsgType::Ping => control.send(MsgType::Pong, &Pong::default()),
        // Types with no handler are skipped, as frps does (§3.2); framing stays in sync.
        _ => {}
    }
    Ok(())
}

/// Validate and register a tcp proxy in frps's check order (§6.2).
fn new_proxy(ctx: &Rc<FrpContext>, control: &Rc<Control>, req: &NewProxy) -> NewProxyResp {
    let name = req.proxy_name.clone();
    let fail = |e: String| NewProxyResp {
        proxy_name: name.clone(),
        error: e,
        ..Default::default()
    };
    let ty = if req.proxy_type.is_empty() {
        "tcp"
    } else {
        req.proxy_type.as_str()
    };
    if ty != "tcp" {
        return fail(format!("unknown proxy type: {ty}"));
    }
    if control.proxies.borrow().len() >= ctx.max_ports_per_client {
        return fail("exceed the max_ports_per_client".into());
    }
    if !ctx.registry.borrow().claim_name(&name) {
        return fail(format!("proxy [{name}] already exists"));
    }
    let port = match claim_port(ctx, req.remote_port) {
        Ok(p) => p,
        Err(e) => {
            ctx.registry.borrow().release_name(&name);
            return fail(e.into());
        }
    };
    let listener = match bind_proxy(ctx, port) {
        Ok(l) => l,
        Err(_) => {
            let reg = ctx.registry.borrow();
            reg.release_name(&name);
            reg.release_port(port);
            return fail("port unavailable".into());
        }
    };
    let proxy = Rc::new(Proxy {
        name: name.clone(),
        port,
        use_encryption: req.use_encryption,
        use_compression: req.use_compression,
        control: Rc::downgrade(control),
        closed: Default::default(),
        listener_fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
    });
    ctx.registry.borrow_mut().insert_proxy(proxy.clone());
    control.proxies.borrow_mut().push(proxy.clone());
    monoio::spawn(work::serve_proxy_listener(ctx.clone(), proxy, listener));
    tracing::info!(peer = %control.peer, proxy = name, port, "frp proxy registered");
    NewProxyResp {
        proxy_name: name,
        remote_addr: format!(":{port}"),
        ..Default::default()
    }
}

/// Claim the requested port (0 = the first free allowed one) on every worker.
fn claim_port(ctx: &FrpContext, requested: i64) -> Result<u16, &'static str> {
    let reg = ctx.registry.borrow();
    if requested == 0 {
        let free = ctx
            .allowed_ports
            .iter()
            .flat_map(|r| r.clone())
            .find(|p| reg.claim_port(*p));
        return free.ok_or("no available port");
    }
    let Ok(port) = u16::try_from(requested) else {
        return Err("port not allowed");
    };
    if !ctx.port_allowed(port) {
        return Err("port not allowed");
    }
    if !reg.claim_port(port) {
        return Err("port already used");
    }
    Ok(port)
}

fn bind_proxy(ctx: &FrpContext, port: u16) -> std::io::Result<TcpListener> {
    let opts = ListenerOpts::new()
        .reuse_addr(true)
        .reuse_port(false)
        .backlog(1024);
    TcpListener::bind_with_config(SocketAddr::new(ctx.proxy_bind_ip, port), &opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::frp::BanHook;
    use std::cell::Cell;
    use std::net::IpAddr;
    use std::sync::Arc;

    struct Bans {
        banned: bool,
        failures: Rc<Cell<u32>>,
    }

    impl BanHook for Bans {
        fn is_banned(&self, _ip: IpAddr) -> bool {
            self.banned
        }
        fn record_failure(&self, _ip: IpAddr) {
            self.failures.set(self.failures.get() + 1);
        }
    }

    fn login(token: Option<&str>, auth_token: &[u8]) -> Login {
        let mut l = Login {
            timestamp: 1795683251,
            ..Default::default()
        };
        l.privilege_key = crypto::privilege_key(auth_token, l.timestamp);
        if let Some(t) = token {
            l.metas.insert("token".into(), t.into());
        }
        l
    }

    #[test]
    fn login_checks_in_harp_order() {
        // (case, banned, login, expected refusal, failures recorded)
        let rows: Vec<(&str, bool, Login, Option<&str>, u32)> = vec![
            ("good", false, login(Some("key"), b""), None, 0),
            (
                "banned ip, even with the key",
                true,
                login(Some("key"), b""),
                Some(ERR_BANNED),
                0,
            ),
            (
                "wrong metas.token",
                false,
                login(Some("nope"), b""),
                Some(ERR_BAD_SHARED_KEY),
                1,
            ),
            (
                "missing metas.token",
                false,
                login(None, b""),
                Some(ERR_BAD_SHARED_KEY),
                1,
            ),
            (
                "key prefix only",
                false,
                login(Some("ke"), b""),
                Some(ERR_BAD_SHARED_KEY),
                1,
            ),
            (
                "auth.token set on the client",
                false,
                login(Some("key"), b"x"),
                Some(ERR_BAD_PRIVILEGE_KEY),
                1,
            ),
        ];
        let peer: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        for (case, banned, l, want, fails) in rows {
            let failures = Rc::new(Cell::new(0));
            let ctx = FrpContext::new(
                Secret::new("key".into()),
                crate::tls::FrpTls::from_mtls(None).unwrap(),
            )
            .with_bans(Box::new(Bans {
                banned,
                failures: failures.clone(),
            }));
            assert_eq!(check_login(&ctx, &l, peer), want, "{case}");
            assert_eq!(failures.get(), fails, "{case}");
        }
    }

    #[test]
    fn port_rules_follow_frps_wording_and_hold_across_workers() {
        struct Nowhere;
        impl crate::frp::Handoff for Nowhere {
            fn send(&self, _to: usize, _conn: crate::frp::HandedFrp) {}
        }
        let dir = Arc::new(crate::frp::Directory::new(2));
        let on = |w| {
            FrpContext::new(
                Secret::new("key".into()),
                crate::tls::FrpTls::from_mtls(None).unwrap(),
            )
            .on_worker(w, dir.clone(), Box::new(Nowhere))
        };
        let (ctx, other) = (on(0), on(1));
        let rows: [(i64, Result<u16, &str>); 8] = [
            (23000, Ok(23000)),
            (23000, Err("port already used")),
            (24099, Ok(24099)),
            (22999, Err("port not allowed")),
            (24100, Err("port not allowed")),
            (-1, Err("port not allowed")),
            (70000, Err("port not allowed")),
            (0, Ok(23001)),
        ];
        for (req, want) in rows {
            assert_eq!(claim_port(&ctx, req), want, "remote_port {req}");
        }
        assert_eq!(claim_port(&other, 23001), Err("port already used"));
        assert_eq!(
            claim_port(&other, 0),
            Ok(23002),
            "worker 1 skips worker 0's ports"
        );
        ctx.registry.borrow().release_port(23001);
        assert_eq!(claim_port(&other, 23001), Ok(23001));
        assert_eq!(dir.owner(23001), Some(1));
    }
}
