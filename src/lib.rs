//! Lyre: a thread-per-core drop-in replacement for Nextcloud's HaRP.
//!
//! # Layout
//! - `config`   HP_* / LYRE_* environment -> frozen, validated [`config::Config`].
//! - `runtime`  one monoio runtime per core (io_uring, epoll fallback), listeners, signals.
//! - `proxy`    the connection lifecycle: accept -> parse head -> decide -> connect -> forward.
//! - `http`     HTTP/1.1 heads (httparse), body framing, pre-rendered answers. Knows no ExApps.
//! - `net`      sockets, SO_REUSEPORT listeners, forwarding pumps (splice / big-buffer copy).
//! - `decide`   HaRP's routing/authorization verdict as pure code (no sockets).
//! - `exapps`   ExApp metadata registry, session cache, ban store; per-worker state + updates.
//! - `frp`      FRP server for unmodified frpc clients (control protocol, yamux, crypto).
//! - `bench`    the built-in load generator.
//! - `demo`     the embedded demo upstream used by `lyre demo`.
//!
//! Imports point downward: `runtime -> proxy -> {decide, frp} -> {http, net} -> config`.

pub mod bench;
pub mod config;
pub mod control;
pub mod decide;
pub mod demo;
pub mod exapps;
pub mod frp;
pub mod http;
pub mod net;
pub mod nextcloud;
pub mod proxy;
pub mod runtime;
