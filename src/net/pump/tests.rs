//! Pump and tunnel tests on real loopback sockets, each run on both monoio drivers.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use super::*;
use crate::net::io as nio;
use crate::runtime::on_both_drivers;

const LONG: Duration = Duration::from_secs(30);
/// Length of the random pattern the streams repeat: prime, so that a lost, duplicated or
/// reordered run of bytes shifts the pattern and fails the comparison.
const PATTERN_BYTES: usize = 1_000_003;

/// A connected loopback pair (client, server). Left in blocking mode (monoio's default):
/// the pumps must set O_NONBLOCK themselves.
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}

fn pattern() -> Rc<Vec<u8>> {
    // xorshift64*: deterministic, incompressible enough for a byte-exact comparison.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(PATTERN_BYTES);
    while v.len() < PATTERN_BYTES {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(PATTERN_BYTES);
    Rc::new(v)
}

/// Send `n` pattern bytes starting at stream position 0.
async fn send_pattern(s: &TcpStream, pat: &[u8], n: u64) {
    try_send_pattern(s, pat, n).await.unwrap();
}

async fn try_send_pattern(s: &TcpStream, pat: &[u8], n: u64) -> io::Result<()> {
    let mut pos = 0u64;
    while pos < n {
        let off = (pos % PATTERN_BYTES as u64) as usize;
        let len = ((n - pos) as usize)
            .min(PATTERN_BYTES - off)
            .min(256 * 1024);
        nio::write_all(s, &pat[off..off + len]).await?;
        pos += len as u64;
    }
    Ok(())
}

/// Read until EOF, comparing every byte with the pattern; returns the count.
async fn recv_pattern(s: &TcpStream, pat: &[u8]) -> u64 {
    let mut pos = 0u64;
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        buf.clear();
        let n = nio::read_some(s, &mut buf, 256 * 1024).await.unwrap();
        if n == 0 {
            return pos;
        }
        let mut data = &buf[..];
        while !data.is_empty() {
            let off = (pos % PATTERN_BYTES as u64) as usize;
            let len = data.len().min(PATTERN_BYTES - off);
            assert!(
                data[..len] == pat[off..off + len],
                "mismatch near byte {pos}"
            );
            data = &data[len..];
            pos += len as u64;
        }
    }
}

/// Read exactly `n` bytes (or fewer at EOF) into a Vec.
async fn read_n(s: &TcpStream, n: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(n);
    while buf.len() < n {
        let want = n - buf.len();
        if nio::read_some(s, &mut buf, want).await.unwrap() == 0 {
            break;
        }
    }
    buf
}

/// client -> [up_srv | pump | down_cli] -> down_srv. Returns the four ends.
async fn chain() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
    let (src, up) = pair().await;
    let (down, sink) = pair().await;
    (src, up, down, sink)
}

fn both_pumps() -> [PumpChoice; 2] {
    [PumpChoice::Splice, PumpChoice::Copy]
}

#[test]
fn forward_exact_64mib_is_byte_exact() {
    const N: u64 = 64 << 20;
    on_both_drivers(|| async {
        let pat = pattern();
        for choice in both_pumps() {
            let (src, up, down, sink) = chain().await;
            let p = pat.clone();
            let tx = monoio::spawn(async move {
                send_pattern(&src, &p, N).await;
                src
            });
            let p = pat.clone();
            let rx = monoio::spawn(async move { recv_pattern(&sink, &p).await });
            let mut pump = Pump::new(choice).unwrap();
            assert_eq!(pump.choice(), choice);
            pump.forward_exact(&up, &down, N, LONG).await.unwrap();
            drop(down);
            assert_eq!(rx.await, N, "{choice:?}");
            drop(tx.await);
        }
    });
}

#[test]
fn forward_to_eof_64mib_counts_and_matches() {
    const N: u64 = (64 << 20) + 12345;
    on_both_drivers(|| async {
        let pat = pattern();
        for choice in both_pumps() {
            let (src, up, down, sink) = chain().await;
            let p = pat.clone();
            let tx = monoio::spawn(async move { send_pattern(&src, &p, N).await });
            let p = pat.clone();
            let rx = monoio::spawn(async move { recv_pattern(&sink, &p).await });
            let mut pump = Pump::new(choice).unwrap();
            let moved = pump.forward_to_eof(&up, &down, LONG).await.unwrap();
            drop(down);
            assert_eq!(moved, N, "{choice:?}");
            assert_eq!(rx.await, N, "{choice:?}");
            tx.await;
        }
    });
}

#[test]
fn forward_exact_leaves_next_request_in_the_socket() {
    on_both_drivers(|| async {
        for choice in both_pumps() {
            let (src, up, down, sink) = chain().await;
            let mut pump = Pump::new(choice).unwrap();
            // Body of 10 bytes followed immediately by the next request's bytes.
            nio::write_all(&src, b"0123456789GET /next").await.unwrap();
            pump.forward_exact(&up, &down, 10, LONG).await.unwrap();
            drop(down);
            assert_eq!(read_n(&sink, 100).await, b"0123456789", "{choice:?}");
            assert_eq!(read_n(&up, 9).await, b"GET /next", "{choice:?}");
            // The same pump serves a second exchange on fresh sockets.
            let (src2, up2, down2, sink2) = chain().await;
            nio::write_all(&src2, b"abc").await.unwrap();
            pump.forward_exact(&up2, &down2, 3, LONG).await.unwrap();
            drop(down2);
            assert_eq!(read_n(&sink2, 100).await, b"abc");
            drop((src, src2));
        }
    });
}

#[test]
fn early_eof_is_unexpected_and_delivers_what_came() {
    on_both_drivers(|| async {
        for choice in both_pumps() {
            let (src, up, down, sink) = chain().await;
            let mut pump = Pump::new(choice).unwrap();
            nio::write_all(&src, b"partial").await.unwrap();
            nio::shutdown_write(&src);
            let err = pump.forward_exact(&up, &down, 100, LONG).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{choice:?}");
            drop(down);
            assert_eq!(read_n(&sink, 100).await, b"partial", "{choice:?}");
            // forward_to_eof on an already-closed source: zero bytes, Ok.
            let (src3, up3, down3, _sink3) = chain().await;
            nio::shutdown_write(&src3);
            assert_eq!(pump.forward_to_eof(&up3, &down3, LONG).await.unwrap(), 0);
        }
    });
}

#[test]
fn idle_source_times_out() {
    on_both_drivers(|| async {
        for choice in both_pumps() {
            let (_src, up, down, _sink) = chain().await;
            let mut pump = Pump::new(choice).unwrap();
            let idle = Duration::from_millis(50);
            let err = pump.forward_exact(&up, &down, 10, idle).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{choice:?}");
        }
    });
}

#[test]
fn stranded_pipe_bytes_never_reach_the_next_connection() {
    on_both_drivers(|| async {
        let pat = pattern();
        let (src, up, down, _stalled_sink) = chain().await;
        let mut pump = Pump::new(PumpChoice::Splice).unwrap();
        let p = pat.clone();
        // The sink never reads: socket buffers fill, bytes get stuck in the pipe, timeout.
        // The sender ends with a reset when `up` is closed unread; that is expected.
        let tx = monoio::spawn(async move {
            let send = try_send_pattern(&src, &p, 64 << 20);
            let _ = monoio::time::timeout(Duration::from_secs(5), send).await;
            src
        });
        let idle = Duration::from_millis(100);
        let err = pump
            .forward_exact(&up, &down, 64 << 20, idle)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop((up, down));
        drop(tx.await);
        // A new exchange gets exactly its own bytes.
        let (src2, up2, down2, sink2) = chain().await;
        nio::write_all(&src2, b"fresh").await.unwrap();
        pump.forward_exact(&up2, &down2, 5, LONG).await.unwrap();
        drop(down2);
        assert_eq!(read_n(&sink2, 1 << 20).await, b"fresh");
    });
}

#[test]
fn readiness_wait_does_not_spin_after_eagain() {
    on_both_drivers(|| async {
        let (c, s) = pair().await;
        nio::write_all(&c, b"x").await.unwrap();
        let mut buf = [0u8; 16];
        // Consume until EAGAIN; the driver may still hold a stale "readable" mark.
        s.readable(false).await.unwrap();
        assert_eq!(nio::try_recv(&s, &mut buf).unwrap(), Some(1));
        assert_eq!(nio::try_recv(&s, &mut buf).unwrap(), None);
        let wait = monoio::time::timeout(Duration::from_millis(100), s.readable(false)).await;
        assert!(
            wait.is_err(),
            "readable(false) returned without data: a busy loop"
        );
        // ...and it does wake up when data arrives.
        nio::write_all(&c, b"y").await.unwrap();
        s.readable(false).await.unwrap();
        assert_eq!(nio::try_recv(&s, &mut buf).unwrap(), Some(1));
    });
}

#[test]
fn tunnel_carries_both_directions_and_half_close() {
    on_both_drivers(|| async {
        for choice in both_pumps() {
            let (client, a) = pair().await;
            let (b, upstream) = pair().await;
            let t = monoio::spawn(async move { tunnel_with(choice, &a, &b, LONG, LONG).await });
            nio::write_all(&client, b"hello").await.unwrap();
            nio::shutdown_write(&client);
            // The upstream sees the bytes, then EOF (half-close passed on) ...
            assert_eq!(read_n(&upstream, 100).await, b"hello", "{choice:?}");
            // ... and can still answer on the other half.
            nio::write_all(&upstream, b"world!").await.unwrap();
            drop(upstream);
            assert_eq!(read_n(&client, 100).await, b"world!", "{choice:?}");
            assert_eq!(t.await.unwrap(), (5, 6), "{choice:?}");
        }
    });
}

#[test]
fn tunnel_16mib_each_way_concurrently() {
    const N: u64 = 16 << 20;
    on_both_drivers(|| async {
        let pat = pattern();
        for choice in both_pumps() {
            let (client, a) = pair().await;
            let (b, upstream) = pair().await;
            let (client, upstream) = (Rc::new(client), Rc::new(upstream));
            let t = monoio::spawn(async move { tunnel_with(choice, &a, &b, LONG, LONG).await });
            let mut tasks = Vec::new();
            for (tx, rx) in [(&client, &upstream), (&upstream, &client)] {
                let (tx, p) = (tx.clone(), pat.clone());
                tasks.push(monoio::spawn(async move {
                    send_pattern(&tx, &p, N).await;
                    nio::shutdown_write(&tx);
                    0
                }));
                let (rx, p) = (rx.clone(), pat.clone());
                tasks.push(monoio::spawn(async move { recv_pattern(&rx, &p).await }));
            }
            let mut got = Vec::new();
            for task in tasks {
                got.push(task.await);
            }
            assert_eq!(got, [0, N, 0, N], "{choice:?}");
            assert_eq!(t.await.unwrap(), (N, N), "{choice:?}");
        }
    });
}

#[test]
fn idle_tunnel_times_out_and_returns_its_lease() {
    on_both_drivers(|| async {
        for choice in both_pumps() {
            let (client, a) = pair().await;
            let (b, upstream) = pair().await;
            let t = monoio::spawn(async move {
                tunnel_with(choice, &a, &b, Duration::from_millis(150), LONG).await
            });
            nio::write_all(&client, b"ping").await.unwrap();
            assert_eq!(read_n(&upstream, 4).await, b"ping");
            // The burst is over: its pipe/buffer is back in the pool, not held by the idle
            // tunnel (the tunnel took it from, or added it to, this thread's pool).
            let pooled = match choice {
                PumpChoice::Splice => pooled().0,
                PumpChoice::Copy => pooled().1,
            };
            // Nothing more: the idle limit ends the tunnel.
            let err = t.await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{choice:?}");
            assert!(pooled >= 1, "{choice:?}: lease not returned");
        }
    });
}

#[test]
fn tunnel_fin_limit_ends_a_half_closed_tunnel() {
    on_both_drivers(|| async {
        let (client, a) = pair().await;
        let (b, _silent_upstream) = pair().await;
        let fin = Duration::from_millis(100);
        let t =
            monoio::spawn(async move { tunnel_with(PumpChoice::Splice, &a, &b, LONG, fin).await });
        nio::shutdown_write(&client);
        // `idle` is 30 s: only the fin limit can end this within the guard.
        let r = monoio::time::timeout(Duration::from_secs(10), t).await;
        let err = r.expect("fin limit did not apply").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    });
}

#[test]
fn tunnel_reset_ends_both_sides() {
    on_both_drivers(|| async {
        for choice in both_pumps() {
            let (client, a) = pair().await;
            let (b, upstream) = pair().await;
            let t = monoio::spawn(async move { tunnel_with(choice, &a, &b, LONG, LONG).await });
            nio::set_linger_zero(&upstream).unwrap();
            drop(upstream);
            let err = t.await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{choice:?}");
            // The client side is closed too (reset passed on): reading ends.
            let mut buf = Vec::new();
            let r = nio::read_some(&client, &mut buf, 16).await;
            assert!(matches!(r, Ok(0)) || r.is_err(), "{choice:?}: {r:?}");
        }
    });
}

fn clear_nonblocking(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl with integer arguments on a valid fd.
    unsafe {
        let flags = libc::fcntl(s.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(s.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
}

#[test]
fn blocking_sockets_never_stall_the_worker() {
    // If a splice ran on a blocking socket, the worker thread would sleep in the kernel
    // and never see its idle timer: run on a side thread and give up waiting after 20 s.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        on_both_drivers(|| async {
            for choice in both_pumps() {
                let (client, a) = pair().await;
                let (b, upstream) = pair().await;
                for s in [&client, &a, &b, &upstream] {
                    clear_nonblocking(s);
                }
                let idle = Duration::from_millis(100);
                let t = monoio::spawn(async move { tunnel_with(choice, &a, &b, idle, LONG).await });
                nio::write_all(&client, b"ping").await.unwrap();
                assert_eq!(read_n(&upstream, 4).await, b"ping");
                assert_eq!(t.await.unwrap_err().kind(), io::ErrorKind::TimedOut);
                // Same for a forward waiting on a silent blocking source.
                let (_src, up, down, _sink) = chain().await;
                clear_nonblocking(&up);
                let mut pump = Pump::new(choice).unwrap();
                let err = pump.forward_exact(&up, &down, 10, idle).await.unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            }
        });
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the pump thread failed (see its panic) or blocked in the kernel");
}
