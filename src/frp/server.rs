//! The FRP listener: accept, sniff/handshake TLS, tell yamux from non-mux by the first
//! plaintext byte (§1.3), and hand streams to `control` (Login) or park them as work
//! connections (NewWorkConn). A bad peer ends its own connection, never the worker.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use super::channel::{read_first_msg, Channel};
use super::control::serve_control;
use super::msg::{self, MsgType, NewWorkConn};
use super::registry::{Killer, WorkConn};
use super::yamux::{Session, Stream};
use super::{FrpContext, FrpError};
use crate::tls::{self, Transport};

/// Pause after a failed accept (EMFILE and friends).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// A yamux session must have a logged-in control by then (frpc logs in at once).
const LOGIN_DEADLINE: Duration = Duration::from_secs(15);
/// How long a closing connection keeps reading (and discarding) the peer's last bytes.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Plaintext look-ahead read after TLS to classify yamux vs. non-mux.
const CLASSIFY_READ_BYTES: usize = 16 * 1024;

/// Serve frpc clients on `listener` forever. Runs on one monoio worker whose runtime has
/// the timer enabled (`enable_timer()`: keepalive, deadlines); every caller of
/// [`super::open_work_stream`] must be on the same thread.
pub async fn serve_frp(listener: TcpListener, ctx: Rc<FrpContext>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                monoio::spawn(serve_conn(ctx.clone(), tcp, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "frp accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve_conn(ctx: Rc<FrpContext>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    if let Err(e) = serve_conn_inner(ctx, tcp, peer).await {
        tracing::warn!(%peer, error = %e, "frp connection closed");
    }
}

async fn serve_conn_inner(
    ctx: Rc<FrpContext>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<(), FrpError> {
    let t = tls::accept(tcp, ctx.tls.as_ref())
        .await
        .map_err(FrpError::Tls)?;
    let mut initial = vec![0u8; CLASSIFY_READ_BYTES];
    let n = match crate::runtime::time::limit(tls::sniff::FIRST_BYTE_TIMEOUT, t.read(&mut initial))
        .await
    {
        Ok(r) => r?,
        Err(_) => return Err(FrpError::Timeout("no data after connect")),
    };
    if n == 0 {
        return Ok(());
    }
    initial.truncate(n);
    if initial[0] == 0x00 {
        return serve_mux(ctx, t, initial, peer).await;
    }
    let t = Rc::new(t);
    let ch = Channel::Raw(t.clone());
    let (ty, body, rest) = read_first_msg(&ch, initial).await?;
    match ty {
        MsgType::Login => {
            let r = serve_control(ctx, ch, body, rest, peer, Killer::Transport(t.clone())).await;
            t.close_gracefully(CLOSE_LINGER).await;
            r
        }
        MsgType::NewWorkConn => park_work_conn(&ctx, ch, &body, rest),
        other => Err(FrpError::UnexpectedFirstMessage(other)),
    }
}

async fn serve_mux(
    ctx: Rc<FrpContext>,
    t: Transport,
    initial: Vec<u8>,
    peer: SocketAddr,
) -> Result<(), FrpError> {
    let session = Session::new();
    let accept = async {
        while let Some(stream) = session.accept().await {
            monoio::spawn(serve_stream(ctx.clone(), stream, peer, session.clone()));
        }
        // Closed: `run` still has to flush the last frames; let it finish the select.
        std::future::pending::<()>().await
    };
    // A session that never logs in must not live on by answering our pings.
    let login_deadline = async {
        monoio::time::sleep(LOGIN_DEADLINE).await;
        if !session.is_authenticated() {
            session.close();
        }
        std::future::pending::<()>().await
    };
    let r = monoio::select! {
        r = session.run(&t, initial) => r.map_err(FrpError::Yamux),
        _ = accept => Ok(()),
        _ = login_deadline => Ok(()),
    };
    t.close_gracefully(CLOSE_LINGER).await;
    r
}

async fn serve_stream(ctx: Rc<FrpContext>, stream: Stream, peer: SocketAddr, session: Session) {
    let ch = Channel::Mux(stream);
    let r = match read_first_msg(&ch, Vec::new()).await {
        Ok((MsgType::Login, body, rest)) => {
            let r =
                serve_control(ctx, ch, body, rest, peer, Killer::Session(session.clone())).await;
            // The control is the session's reason to exist; frpc reconnects anyway. A
            // refused login closes only its stream, as frps does: frpc reads the LoginResp
            // error and closes the session itself (closing it here raced that read, and frpc
            // then reported "session shutdown" instead of the reason). The login deadline
            // still ends a session whose peer never leaves.
            if session.is_authenticated() {
                session.close();
            }
            r
        }
        Ok((MsgType::NewWorkConn, body, rest)) => park_work_conn(&ctx, ch, &body, rest),
        Ok((other, _, _)) => Err(FrpError::UnexpectedFirstMessage(other)),
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        tracing::warn!(%peer, error = %e, "frp stream closed");
    }
}

/// Queue a work connection for its control; unknown run_id or a full pool closes it
/// without a reply (frps, §7.3).
fn park_work_conn(
    ctx: &FrpContext,
    ch: Channel,
    body: &[u8],
    leftover: Vec<u8>,
) -> Result<(), FrpError> {
    let req: NewWorkConn = msg::parse_body(MsgType::NewWorkConn, body)?;
    let control = ctx.registry.borrow().control(&req.run_id);
    match control {
        Some(c) => {
            if !c.park(WorkConn { ch, leftover }) {
                tracing::debug!(
                    run_id = req.run_id,
                    "frp work connection dropped: pool full"
                );
            }
        }
        None => tracing::debug!(
            run_id = req.run_id,
            "frp work connection for unknown run_id"
        ),
    }
    Ok(())
}
