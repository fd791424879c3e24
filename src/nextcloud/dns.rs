//! Resolving the Nextcloud host without blocking the worker: `getaddrinfo` runs on a short
//! helper thread and wakes the waiting tasks when done; the answer is cached per worker for
//! DEFAULT_DNS_TTL (aiohttp's default DNS cache TTL, which HaRP used). Concurrent lookups on
//! one worker share one thread. IP literals never reach this module's thread.

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::runtime::signal::same_task;

/// How long a resolved address list is reused (aiohttp `ttl_dns_cache` default).
pub const DEFAULT_DNS_TTL: Duration = Duration::from_secs(10);
/// Addresses kept from one answer (connect tries them in order).
pub const MAX_ADDRS: usize = 8;

type Answer = Result<Vec<SocketAddr>, String>;

/// One lookup in flight: the helper thread fills `answer` and wakes every waiter.
#[derive(Default)]
struct Flight {
    answer: Option<Answer>,
    wakers: Vec<Waker>,
}

/// Per-worker cache for one host.
pub struct Resolver {
    host: String,
    port: u16,
    literal: Option<SocketAddr>,
    cached: RefCell<Option<(Vec<SocketAddr>, Instant)>>,
    inflight: RefCell<Option<Arc<Mutex<Flight>>>>,
}

impl Resolver {
    pub fn new(host: &str, port: u16) -> Self {
        Resolver {
            host: host.to_string(),
            port,
            literal: host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, port)),
            cached: RefCell::new(None),
            inflight: RefCell::new(None),
        }
    }

    /// The host's addresses (IPv4 first, like HaRP's resolution order).
    pub async fn resolve(&self) -> Answer {
        if let Some(addr) = self.literal {
            return Ok(vec![addr]);
        }
        if let Some((addrs, at)) = &*self.cached.borrow() {
            if at.elapsed() < DEFAULT_DNS_TTL {
                return Ok(addrs.clone());
            }
        }
        let flight = self.flight();
        let answer = Wait(flight.clone()).await;
        let mut inflight = self.inflight.borrow_mut();
        if inflight.as_ref().is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            *inflight = None;
            if let Ok(addrs) = &answer {
                *self.cached.borrow_mut() = Some((addrs.clone(), Instant::now()));
            }
        }
        answer
    }

    /// Join the lookup in flight or start one on a helper thread.
    fn flight(&self) -> Arc<Mutex<Flight>> {
        if let Some(f) = &*self.inflight.borrow() {
            return f.clone();
        }
        let flight = Arc::new(Mutex::new(Flight::default()));
        let (host, port, shared) = (self.host.clone(), self.port, flight.clone());
        let spawned = std::thread::Builder::new()
            .name("lyre-nc-dns".into())
            .spawn(move || {
                let answer = lookup(&host, port);
                let wakers = match shared.lock() {
                    Ok(mut f) => {
                        f.answer = Some(answer);
                        std::mem::take(&mut f.wakers)
                    }
                    Err(_) => Vec::new(),
                };
                wakers.into_iter().for_each(Waker::wake);
            });
        if let Err(e) = spawned {
            if let Ok(mut f) = flight.lock() {
                f.answer = Some(Err(format!("cannot start a DNS thread: {e}")));
            }
        }
        *self.inflight.borrow_mut() = Some(flight.clone());
        flight
    }
}

fn lookup(host: &str, port: u16) -> Answer {
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

struct Wait(Arc<Mutex<Flight>>);

impl Future for Wait {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let Ok(mut f) = self.0.lock() else {
            return Poll::Ready(Err("DNS helper thread panicked".into()));
        };
        if let Some(answer) = &f.answer {
            return Poll::Ready(answer.clone());
        }
        if !f.wakers.iter().any(|w| same_task(w, cx.waker())) {
            f.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
