//! The FRP listener: accept, sniff/handshake TLS, read frpc's first message to place the
//! connection on a worker (`directory`; moved there with its TLS session), tell yamux from
//! non-mux by the first plaintext byte (§1.3), and hand streams to `control` (Login) or
//! park them as work connections (NewWorkConn). A bad peer ends its own connection, never
//! the worker.

use crate::runtime::contain::spawn_conn;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};

use super::channel::{read_first_msg, read_first_msg_within, Channel, FIRST_MSG_TIMEOUT};
use super::control::serve_control;
use super::directory::{FirstMsg, SessionSlot};
use super::msg::{self, Login, MsgType, NewWorkConn};
use super::registry::{Killer, WorkConn};
use super::yamux::frame::{FrameType, Header, HEADER_BYTES};
use super::yamux::{Session, Stream};
use super::{FrpContext, FrpError};
use crate::tls::{self, TlsSession, Transport};

/// Pause after a failed accept (EMFILE and friends).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// A yamux session must have a logged-in control this long after its connection was
/// accepted (frpc logs in at once).
const LOGIN_DEADLINE: Duration = Duration::from_secs(15);
/// How long a closing connection keeps reading (and discarding) the peer's last bytes.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Plaintext look-ahead read after TLS to classify yamux vs. non-mux.
const CLASSIFY_READ_BYTES: usize = 16 * 1024;

/// Serve frpc clients on `listener` forever, placing each connection on a worker by its
/// first message (`directory`). The runtime needs the timer enabled (`enable_timer()`:
/// keepalive, deadlines).
pub async fn serve_frp(listener: TcpListener, ctx: Rc<FrpContext>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                spawn_conn("frpc connection", serve_conn(ctx.clone(), tcp, peer));
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
    // As frps: the TLS handshake and the first message share one deadline from here.
    let opened = Instant::now();
    let t = tls::accept(tcp, &ctx.tls).await.map_err(FrpError::Tls)?;
    let Some(initial) = read_opening(&t, opened).await? else {
        return Ok(());
    };
    let first = match peek_first_msg(&initial) {
        Peek::Found(first) => Some(first),
        Peek::Partial | Peek::Other => None,
    };
    let placed = ctx.directory().place(first.as_ref(), ctx.worker());
    let (mut t, mut slot) = (t, placed.slot);
    if placed.worker != ctx.worker() {
        if let Some(handoff) = ctx.handoff.as_ref() {
            match Box::new(t).into_session() {
                Ok((tcp, tls)) => {
                    let fd = crate::net::io::dup_for_handover(&tcp)?;
                    drop(tcp);
                    let conn = HandedFrp {
                        fd,
                        tls,
                        initial,
                        peer,
                        opened,
                        _slot: slot,
                    };
                    handoff.send(placed.worker, conn);
                    return Ok(());
                }
                Err(back) => t = *back,
            }
        }
        // Not movable (TLS records still queued, or no hand-off): it lives here after all.
        if let Some(s) = slot.as_mut() {
            s.rehome(ctx.worker());
        }
    }
    serve_classified(ctx, t, initial, peer, opened, slot).await
}

/// An FRP connection on its way to the worker it was placed on: the socket (a duplicate
/// fd; the accepting worker's copy is closed), its TLS session, the plaintext read so far,
/// when it was accepted (its opening deadlines run from then) and its session count.
#[derive(Debug)]
pub struct HandedFrp {
    fd: OwnedFd,
    tls: Option<TlsSession>,
    initial: Vec<u8>,
    peer: SocketAddr,
    opened: Instant,
    _slot: Option<SessionSlot>,
}

/// On the worker a connection was placed on: serve it from where the accepting worker
/// stopped.
pub async fn adopt(ctx: Rc<FrpContext>, conn: HandedFrp) {
    let HandedFrp {
        fd,
        tls,
        initial,
        peer,
        opened,
        _slot: slot,
    } = conn;
    let tcp = match crate::net::io::adopt_socket(fd) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "frp connection could not move to this worker");
            return;
        }
    };
    let t = match tls {
        Some(session) => Transport::from_session(tcp, session),
        None => Transport::plain(tcp, Vec::new()),
    };
    if let Err(e) = serve_classified(ctx, t, initial, peer, opened, slot).await {
        tracing::warn!(%peer, error = %e, "frp connection closed");
    }
}

/// What is left of the opening deadline ([`FIRST_MSG_TIMEOUT`] from accept, as frps's read
/// deadline): the TLS handshake, the placement look-ahead and the first message share it.
fn opening_time_left(opened: Instant) -> Duration {
    FIRST_MSG_TIMEOUT.saturating_sub(opened.elapsed())
}

/// Read until frpc's first message is complete (placement needs its run_id), at most
/// [`CLASSIFY_READ_BYTES`], until [`FIRST_MSG_TIMEOUT`] after `opened` in all: a peer
/// trickling a byte at a time gets no more time than a silent one. `None`: the peer closed
/// before sending anything.
async fn read_opening(t: &Transport, opened: Instant) -> Result<Option<Vec<u8>>, FrpError> {
    let mut initial = Vec::new();
    loop {
        let mut chunk = vec![0u8; CLASSIFY_READ_BYTES - initial.len()];
        let left = opening_time_left(opened);
        let read = crate::runtime::time::limit(left, t.read(&mut chunk));
        let n = match read.await {
            Ok(r) => r?,
            Err(_) if initial.is_empty() => return Err(FrpError::Timeout("no data after connect")),
            // Placement only: the protocol's own deadlines take it from here.
            Err(_) => return Ok(Some(initial)),
        };
        if n == 0 {
            return Ok((!initial.is_empty()).then_some(initial));
        }
        initial.extend_from_slice(&chunk[..n]);
        let partial = matches!(peek_first_msg(&initial), Peek::Partial);
        if !partial || initial.len() >= CLASSIFY_READ_BYTES {
            return Ok(Some(initial));
        }
    }
}

/// What the opening bytes of an FRP connection say about where it belongs.
#[derive(Debug, PartialEq, Eq)]
enum Peek {
    Found(FirstMsg),
    /// The first message is not complete yet.
    Partial,
    /// Something else (another first message, or bytes the protocol code will refuse).
    Other,
}

/// frpc's first message, read without consuming anything: straight from the plaintext
/// without tcpMux, or from the first stream's data frames with it (a yamux session opens
/// with the control stream's SYN, then the Login in one or more data frames).
fn peek_first_msg(opening: &[u8]) -> Peek {
    if opening.first() != Some(&0x00) {
        return peek_plain(opening);
    }
    let mut data = Vec::new();
    let mut first_stream = None;
    let mut rest = opening;
    while rest.len() >= HEADER_BYTES {
        let mut raw = [0u8; HEADER_BYTES];
        raw.copy_from_slice(&rest[..HEADER_BYTES]);
        let Ok(h) = Header::parse(&raw) else {
            return Peek::Other;
        };
        rest = &rest[HEADER_BYTES..];
        if h.ty != FrameType::Data {
            continue;
        }
        let len = h.length as usize;
        if len > CLASSIFY_READ_BYTES {
            // No opening read can ever hold it: not frpc's Login (a few hundred bytes).
            // Judged now by the session code (a window violation, say), not after the
            // look-ahead's deadline.
            return Peek::Other;
        }
        if rest.len() < len {
            return Peek::Partial;
        }
        if *first_stream.get_or_insert(h.stream_id) == h.stream_id {
            data.extend_from_slice(&rest[..len]);
            if let found @ (Peek::Found(_) | Peek::Other) = peek_plain(&data) {
                return found;
            }
        }
        rest = &rest[len..];
    }
    Peek::Partial
}

fn peek_plain(bytes: &[u8]) -> Peek {
    let frame = match msg::parse_frame(bytes) {
        Ok(Some(f)) => f,
        Ok(None) => return Peek::Partial,
        Err(_) => return Peek::Other,
    };
    let first = match frame.ty {
        MsgType::Login => msg::parse_body::<Login>(frame.ty, frame.body)
            .map(|l| FirstMsg::Login { run_id: l.run_id }),
        MsgType::NewWorkConn => msg::parse_body::<NewWorkConn>(frame.ty, frame.body)
            .map(|w| FirstMsg::WorkConn { run_id: w.run_id }),
        _ => return Peek::Other,
    };
    first.map_or(Peek::Other, Peek::Found)
}

/// Serve a connection whose opening bytes were read, on the worker it lives on. `slot`
/// counts a session here for as long as it is served. The first message (or, with tcpMux,
/// the Login) is due by the deadlines that started at `opened`.
async fn serve_classified(
    ctx: Rc<FrpContext>,
    t: Transport,
    initial: Vec<u8>,
    peer: SocketAddr,
    opened: Instant,
    _slot: Option<SessionSlot>,
) -> Result<(), FrpError> {
    if initial[0] == 0x00 {
        return serve_mux(ctx, t, initial, peer, opened).await;
    }
    let t = Rc::new(t);
    let ch = Channel::Raw(t.clone());
    let left = opening_time_left(opened);
    let (ty, body, rest) = read_first_msg_within(&ch, initial, left).await?;
    match ty {
        MsgType::Login => {
            let r = serve_control(ctx, ch, body, rest, peer, Killer::Transport(t.clone())).await;
            t.close_gracefully(CLOSE_LINGER).await;
            r
        }
        MsgType::NewWorkConn => park_work_conn(&ctx, ch, &body, rest, None),
        other => Err(FrpError::UnexpectedFirstMessage(other)),
    }
}

async fn serve_mux(
    ctx: Rc<FrpContext>,
    t: Transport,
    initial: Vec<u8>,
    peer: SocketAddr,
    opened: Instant,
) -> Result<(), FrpError> {
    let session = Session::new();
    let accept = async {
        while let Some(stream) = session.accept().await {
            let serve = serve_stream(ctx.clone(), stream, peer, session.clone());
            spawn_conn("frpc stream", serve);
        }
        // Closed: `run` still has to flush the last frames; let it finish the select.
        std::future::pending::<()>().await
    };
    // A session that never logs in must not live on by answering our pings.
    let login_deadline = async {
        monoio::time::sleep(LOGIN_DEADLINE.saturating_sub(opened.elapsed())).await;
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
        Ok((MsgType::NewWorkConn, body, rest)) => {
            park_work_conn(&ctx, ch, &body, rest, Some(&session))
        }
        Ok((other, _, _)) => Err(FrpError::UnexpectedFirstMessage(other)),
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        tracing::warn!(%peer, error = %e, "frp stream closed");
    }
}

/// Queue a work connection for its control; unknown run_id or a full pool closes it
/// without a reply (frps, §7.3). A yamux work stream (`session`) must also come on its
/// control's own session, as frpc opens them: frps checks only the run_id, which would let
/// anyone who learns one (it is logged) park streams in that client's pool and receive
/// its users' requests.
fn park_work_conn(
    ctx: &FrpContext,
    ch: Channel,
    body: &[u8],
    leftover: Vec<u8>,
    session: Option<&Session>,
) -> Result<(), FrpError> {
    let req: NewWorkConn = msg::parse_body(MsgType::NewWorkConn, body)?;
    let control = ctx.registry.borrow().control(&req.run_id);
    match control {
        Some(c) if session.is_some_and(|s| !c.is_on_session(s)) => tracing::warn!(
            run_id = req.run_id,
            "frp work stream refused: not on its control's session"
        ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frp::yamux::frame::FLAG_SYN;

    fn login(run_id: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let body = Login {
            run_id: run_id.into(),
            ..Default::default()
        };
        msg::write_msg(&mut out, MsgType::Login, &body);
        out
    }

    fn yamux(ty: FrameType, flags: u16, stream: u32, payload: &[u8], length: u32) -> Vec<u8> {
        let mut f = Header::new(ty, flags, stream, length).encode().to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn data(stream: u32, payload: &[u8]) -> Vec<u8> {
        yamux(FrameType::Data, 0, stream, payload, payload.len() as u32)
    }

    fn found_login(run_id: &str) -> Peek {
        Peek::Found(FirstMsg::Login {
            run_id: run_id.into(),
        })
    }

    #[test]
    fn placement_reads_the_first_message_without_tcpmux() {
        let l = login("abc");
        assert_eq!(peek_first_msg(&l), found_login("abc"));
        assert_eq!(peek_first_msg(&l[..l.len() - 1]), Peek::Partial);
        let mut w = Vec::new();
        let body = NewWorkConn {
            run_id: "abc".into(),
            ..Default::default()
        };
        msg::write_msg(&mut w, MsgType::NewWorkConn, &body);
        let want = Peek::Found(FirstMsg::WorkConn {
            run_id: "abc".into(),
        });
        assert_eq!(peek_first_msg(&w), want);
        let mut ping = Vec::new();
        msg::write_msg(&mut ping, MsgType::Ping, &msg::Empty {});
        assert_eq!(peek_first_msg(&ping), Peek::Other);
        assert_eq!(peek_first_msg(b"\xffjunk"), Peek::Other);
    }

    #[test]
    fn placement_reads_the_login_from_the_first_yamux_stream() {
        let l = login("r1");
        let (a, b) = l.split_at(7);
        // frpc: SYN (window update) for stream 1, then the Login, here in two data frames
        // with another stream's frame between them.
        let mut opening = yamux(FrameType::WindowUpdate, FLAG_SYN, 1, &[], 0);
        opening.extend(data(1, a));
        opening.extend(data(3, b"other stream"));
        opening.extend(data(1, b));
        assert_eq!(peek_first_msg(&opening), found_login("r1"));
        for cut in [5, HEADER_BYTES, HEADER_BYTES + 20, opening.len() - 1] {
            assert_eq!(peek_first_msg(&opening[..cut]), Peek::Partial, "cut {cut}");
        }
        let mut bad_version = opening.clone();
        bad_version[HEADER_BYTES] = 9;
        assert_eq!(peek_first_msg(&bad_version), Peek::Other);
        // A frame longer than what was read stays partial, unless no opening read could
        // ever hold it.
        let longer = yamux(FrameType::Data, FLAG_SYN, 1, b"x", 100);
        assert_eq!(peek_first_msg(&longer), Peek::Partial);
        let huge = yamux(FrameType::Data, FLAG_SYN, 1, b"x", u32::MAX);
        assert_eq!(peek_first_msg(&huge), Peek::Other);
    }
}
