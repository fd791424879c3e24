//! Thread per core: one monoio runtime per worker thread, each with its own SO_REUSEPORT
//! listeners and its own state (upstream pool, pumps). Nothing on the request path is shared
//! across workers.
//!
//! The driver is picked once at start (`LYRE_DRIVER`): io_uring when the kernel allows it
//! (Docker's default seccomp profile blocks it), else epoll; the choice is logged.

pub mod contain;
pub mod memcpy;
pub mod signal;
pub mod time;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::{error, info};

use crate::config::{Config, DriverChoice};
use crate::tls::frontend::HttpsCert;

/// io_uring submission queue size per worker.
pub const DEFAULT_URING_ENTRIES: u32 = 4096;

/// The driver a worker actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Resolve `LYRE_DRIVER` against what the kernel allows.
pub fn pick_driver(choice: DriverChoice) -> Result<Driver, String> {
    let unavailable = uring_unavailable();
    match (choice, unavailable) {
        (DriverChoice::Epoll, _) => Ok(Driver::Epoll),
        (DriverChoice::Auto | DriverChoice::IoUring, None) => Ok(Driver::IoUring),
        (DriverChoice::Auto, Some(why)) => {
            info!("io_uring is not available ({why}): running on epoll");
            Ok(Driver::Epoll)
        }
        (DriverChoice::IoUring, Some(why)) => Err(format!(
            "LYRE_DRIVER=uring: io_uring is not available ({why}); use LYRE_DRIVER=auto or \
             epoll, or allow io_uring_setup, io_uring_enter and io_uring_register"
        )),
    }
}

/// Why io_uring cannot run here (`None`: it can). The errno of a real `io_uring_setup` tells
/// an operator which fix applies: EPERM is a seccomp filter (Docker's default profile) or the
/// `kernel.io_uring_disabled` sysctl, ENOSYS a kernel built without io_uring.
fn uring_unavailable() -> Option<String> {
    if let Err(e) = io_uring::IoUring::new(2) {
        let cause = match e.raw_os_error() {
            Some(libc::EPERM) => {
                ": forbidden by a seccomp profile (Docker's default blocks io_uring) or by \
                 the kernel.io_uring_disabled sysctl"
            }
            Some(libc::ENOSYS) => ": this kernel has no io_uring",
            _ => "",
        };
        return Some(format!("io_uring_setup failed: {e}{cause}"));
    }
    if !monoio::utils::detect_uring() {
        return Some(
            "the kernel lacks an io_uring operation monoio needs, or \
             MONOIO_FORCE_LEGACY_DRIVER is set"
                .into(),
        );
    }
    None
}

/// Tests: run `f()` to completion on a fresh runtime of each driver (io_uring first, as
/// `lyre serve` builds it), so socket behaviour is checked on both.
#[cfg(test)]
pub fn on_both_drivers<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    for driver in [Driver::IoUring, Driver::Epoll] {
        block_on(driver, f()).expect("runtime (this VM supports io_uring)");
    }
}

/// Run `fut` to completion on a fresh runtime of the given driver, on this thread.
pub fn block_on<F: Future>(driver: Driver, fut: F) -> io::Result<F::Output> {
    match driver {
        Driver::IoUring => {
            let build = |urb: io_uring::Builder| {
                RuntimeBuilder::<IoUringDriver>::new()
                    .with_entries(DEFAULT_URING_ENTRIES)
                    .uring_builder(urb)
                    .attach_thread_pool(Box::new(blocking_pool()))
                    .enable_timer()
                    .build()
            };
            // Deferred task running (kernel 6.1+): completions are posted only when the
            // worker enters the kernel to wait, so a peer's packet never interrupts a busy
            // worker with an IPI to run io_uring task work. Older kernels: plain ring.
            let mut rt = match build(deferred_taskrun_builder()) {
                Ok(rt) => rt,
                Err(_) => build(io_uring::IoUring::builder())?,
            };
            Ok(rt.block_on(fut))
        }
        Driver::Epoll => {
            let mut rt = RuntimeBuilder::<LegacyDriver>::new()
                .with_entries(DEFAULT_URING_ENTRIES)
                .attach_thread_pool(Box::new(blocking_pool()))
                .enable_timer()
                .build()?;
            Ok(rt.block_on(fut))
        }
    }
}

fn deferred_taskrun_builder() -> io_uring::Builder {
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    urb
}

/// Threads for blocking work (DNS lookups of ExApp hosts), shared by all workers.
pub const DEFAULT_BLOCKING_THREADS: usize = 2;

fn blocking_pool() -> monoio::blocking::DefaultThreadPool {
    static POOL: std::sync::OnceLock<monoio::blocking::DefaultThreadPool> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| monoio::blocking::DefaultThreadPool::new(DEFAULT_BLOCKING_THREADS))
        .clone()
}

/// Start `cfg.workers` threads named `lyre-worker-N`, each running `worker(id)` on its own
/// runtime. Pins worker N to CPU N when `LYRE_PIN_CPUS` is set.
pub fn spawn_workers<F, Fut>(cfg: &Arc<Config>, driver: Driver, worker: F) -> Vec<JoinHandle<()>>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (0..cfg.workers)
        .map(|id| {
            let worker = worker.clone();
            let pin = cfg.pin_cpus;
            std::thread::Builder::new()
                .name(format!("lyre-worker-{id}"))
                .spawn(move || {
                    if pin {
                        if let Err(e) = monoio::utils::bind_to_cpu_set([id % cpus]) {
                            error!(
                                worker = id,
                                "LYRE_PIN_CPUS: cannot pin to CPU {}: {e}",
                                id % cpus
                            );
                        }
                    }
                    let run = || {
                        if let Err(e) = block_on(driver, worker(id)) {
                            error!(
                                worker = id,
                                "cannot build the {} runtime: {e}",
                                driver.name()
                            );
                            std::process::exit(1);
                        }
                    };
                    if let contain::WorkerEnd::Panicked(msg) = contain::supervise(run) {
                        error!(
                            worker = id,
                            "worker stopped on a panic ({msg}); exiting with status 1 so the \
                             container's restart policy starts a clean Lyre"
                        );
                        std::process::exit(1);
                    }
                })
                // invariant: spawning a thread fails only on resource exhaustion at start.
                .expect("spawn worker thread")
        })
        .collect()
}

/// The stop signals, then SIGHUP (reload): blocked in every thread, taken by `sigwait`.
const HANDLED_SIGNALS: [libc::c_int; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP];

/// Block SIGTERM/SIGINT/SIGUSR1/SIGHUP in this thread (call before spawning workers so they
/// inherit the mask), then wait for a stop signal. SIGHUP reloads the HTTPS certificate
/// (HaRP: HAProxy's live reload of its certs, H-102) and never stops the process; the
/// configuration itself is not re-read (HaRP does not re-render it either).
pub fn wait_for_stop_signal(https: Option<&HttpsCert>) -> i32 {
    let set = signal_set(&HANDLED_SIGNALS);
    // SAFETY: sigwait on a valid, initialised set.
    unsafe {
        loop {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) != 0 {
                continue;
            }
            if sig == libc::SIGHUP {
                reload_https(https);
                continue;
            }
            return sig;
        }
    }
}

fn reload_https(https: Option<&HttpsCert>) {
    match https.map(|c| (c.reload(), c.path())) {
        None => info!("SIGHUP: HTTPS is off (no certificate at start), nothing to reload"),
        Some((Ok(()), path)) => info!(cert = %path.display(), "SIGHUP: HTTPS certificate reloaded"),
        Some((Err(e), path)) => tracing::warn!(
            cert = %path.display(),
            "SIGHUP: HTTPS certificate not reloaded, the previous one stays in use: {e}"
        ),
    }
}

/// How often a start still waiting for its workers looks for a stop signal.
const START_SIGNAL_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// A pending SIGTERM/SIGINT/SIGUSR1, taken without waiting (SIGHUP stays pending for
/// [`wait_for_stop_signal`]).
fn take_pending_stop_signal() -> Option<i32> {
    let set = signal_set(&HANDLED_SIGNALS[..3]);
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid set and timeout; a zero timeout never blocks.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
    (sig > 0).then_some(sig)
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a stack-allocated sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Block the stop signals for the calling thread and every thread spawned after.
pub fn block_stop_signals() {
    let set = signal_set(&HANDLED_SIGNALS);
    // SAFETY: a valid set; blocking signals in this thread only.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Start the appliance and block until a stop signal: logging, driver choice, one worker per
/// core with its own listeners. Returns an operator-facing error if a listener cannot bind.
pub fn run(cfg: crate::config::Config, warnings: Vec<String>) -> Result<(), String> {
    init_logging(cfg.log_level);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    raise_descriptor_limit(cfg.max_connections);
    let driver = pick_driver(cfg.driver)?;
    let frp_tls = frp_tls_config(&cfg)?;
    let https = https_config(&cfg)?;
    let https_on = https.is_some();
    let https_reload = https.clone();
    ensure_unclaimed("HP_EXAPPS_ADDRESS", cfg.exapps_address)?;
    if https_on {
        ensure_unclaimed("HP_EXAPPS_HTTPS_ADDRESS", cfg.exapps_https_address)?;
    }
    let cfg = Arc::new(cfg);
    block_stop_signals();
    let (bus, receivers) = crate::proxy::bus::Bus::new(cfg.workers)
        .map_err(|e| format!("cannot create the worker bus: {e}"))?;
    let receivers: Arc<std::sync::Mutex<Vec<Option<crate::proxy::bus::BusReceiver>>>> = Arc::new(
        std::sync::Mutex::new(receivers.into_iter().map(Some).collect()),
    );
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let directory = Arc::new(crate::frp::Directory::new(cfg.workers));
    let conns = crate::net::limits::ConnLimit::new(cfg.max_connections);
    let worker_cfg = cfg.clone();
    let _workers = spawn_workers(&cfg, driver, move |id| {
        let cfg = worker_cfg.clone();
        let ready = ready_tx.clone();
        let bus = bus.clone();
        let shared = (directory.clone(), conns.clone());
        let tls = WorkerTls {
            frp: frp_tls.clone(),
            https: https.clone(),
        };
        // invariant: each worker id takes its own receiver exactly once.
        let rx = receivers.lock().map(|mut v| v[id].take()).ok().flatten();
        async move { worker_main(id, cfg, (bus, shared), rx, tls, ready).await }
    });
    let mut ready = 0;
    while ready < cfg.workers {
        match ready_rx.recv_timeout(START_SIGNAL_CHECK) {
            Ok(Ok(())) => ready += 1,
            Ok(Err(msg)) => return Err(msg),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(sig) = take_pending_stop_signal() {
                    info!(signal = sig, "stopping during start");
                    return Ok(());
                }
            }
            Err(_) => return Err("a worker thread died during start".into()),
        }
    }
    info!(
        driver = driver.name(),
        workers = cfg.workers,
        pump = ?cfg.pump,
        address = %cfg.exapps_address,
        "lyre ready"
    );
    info!("{}", memcpy::describe());
    log_https(&cfg, https_on);
    let sig = wait_for_stop_signal(https_reload.as_deref());
    info!(signal = sig, "stopping");
    Ok(())
}

/// Lift the soft descriptor limit to the hard one, and say so when even that cannot hold
/// `LYRE_MAX_CONNECTIONS` clients.
fn raise_descriptor_limit(max_connections: usize) {
    let need = crate::net::limits::descriptors_needed(max_connections);
    match crate::net::limits::raise_nofile_limit() {
        Ok(l) if l.soft < need => tracing::warn!(
            "the file descriptor limit is {} but LYRE_MAX_CONNECTIONS={max_connections} \
             needs about {need}: past it new connections fail. Raise the hard limit \
             (systemd LimitNOFILE=65536, docker run --ulimit nofile=65536, ulimit -Hn) \
             or lower LYRE_MAX_CONNECTIONS",
            l.soft
        ),
        Ok(l) if l.soft > l.soft_before => {
            info!(
                from = l.soft_before,
                to = l.soft,
                "raised the file descriptor limit"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the file descriptor limit: {e}"),
    }
}

/// What every worker shares: the tunnel directory and the client connection count.
type WorkerShared = (
    Arc<crate::frp::Directory>,
    Arc<crate::net::limits::ConnLimit>,
);

/// The TLS configs a worker serves with, loaded once at start and shared by all workers.
struct WorkerTls {
    /// FRP listener (worker 0): mTLS, or optional TLS with `HP_FRP_DISABLE_TLS=true`.
    frp: crate::tls::FrpTls,
    /// HTTPS frontend; `None` when `$LYRE_CERTS_DIR/cert.pem` is absent.
    https: Option<Arc<HttpsCert>>,
}

/// One worker: bind its listeners, report readiness, serve until the process exits.
async fn worker_main(
    id: usize,
    cfg: Arc<crate::config::Config>,
    (bus, shared): (Arc<crate::proxy::bus::Bus>, WorkerShared),
    rx: Option<crate::proxy::bus::BusReceiver>,
    tls: WorkerTls,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let nc = match crate::nextcloud::NcClient::new(&cfg) {
        Ok(nc) => nc,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    // Bound before the HTTP listener: once HTTP accepts, this worker's HTTPS does too.
    let https = match tls
        .https
        .map(|t| bind_https(&cfg).map(|l| (l, t)))
        .transpose()
    {
        Ok(h) => h,
        Err(msg) => {
            let _ = ready.send(Err(msg));
            return;
        }
    };
    let listener = match crate::net::listener::bind_reuseport(cfg.exapps_address) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "HP_EXAPPS_ADDRESS: cannot listen on {}: {e} (is another process using it? \
                 set HP_EXAPPS_ADDRESS to a free host:port)",
                cfg.exapps_address
            )));
            return;
        }
    };
    let owned = if id == crate::proxy::FRP_WORKER {
        match bind_worker0_listeners(&cfg) {
            Ok(l) => Some(l),
            Err(msg) => {
                let _ = ready.send(Err(msg));
                return;
            }
        }
    } else {
        None
    };
    let _ = ready.send(Ok(()));
    let worker = crate::proxy::Worker::new(id, cfg, bus, nc, shared);
    let frp = crate::proxy::start_frp(&worker, tls.frp);
    if let Some((admin, frp_listener)) = owned {
        monoio::spawn(crate::control::serve_admin(admin));
        monoio::spawn(crate::frp::serve_frp(frp_listener, frp));
    }
    if let Some((listener, tls)) = https {
        monoio::spawn(crate::proxy::accept_loop_https(
            worker.clone(),
            listener,
            tls,
        ));
    }
    if let Some(rx) = rx {
        monoio::spawn(crate::proxy::run_bus(worker.clone(), rx));
    }
    crate::proxy::accept_loop(worker, listener).await;
}

/// The workers' SO_REUSEPORT listeners would share `addr` with another process's without
/// an error (a second Lyre started by mistake would take half the connections): refuse to
/// start instead.
fn ensure_unclaimed(var: &str, addr: std::net::SocketAddr) -> Result<(), String> {
    crate::net::listener::ensure_unclaimed(addr).map_err(|e| {
        format!(
            "{var}: cannot listen on {addr}: {e} (another process listens there, perhaps \
             another lyre; stop it or set {var} to a free host:port)"
        )
    })
}

/// Worker 0 owns the admin listener and the FRP listener (it places each frpc connection
/// on a worker: `frp::directory`).
fn bind_worker0_listeners(
    cfg: &crate::config::Config,
) -> Result<(monoio::net::TcpListener, monoio::net::TcpListener), String> {
    use crate::net::listener::bind_patiently;
    let admin =
        bind_patiently(cfg.control_address, monoio::net::TcpListener::bind).map_err(|e| {
            format!(
            "LYRE_CONTROL_ADDRESS: cannot listen on {}: {e} (set LYRE_CONTROL_ADDRESS to a free \
             loopback host:port)",
            cfg.control_address
        )
        })?;
    let frp =
        bind_patiently(cfg.frp_bind_address, monoio::net::TcpListener::bind).map_err(|e| {
            format!(
                "HP_FRP_ADDRESS: cannot listen on {}: {e} (set HP_FRP_ADDRESS to a free host:port)",
                cfg.frp_bind_address
            )
        })?;
    Ok((admin, frp))
}

/// This worker's SO_REUSEPORT socket on `HP_EXAPPS_HTTPS_ADDRESS`.
fn bind_https(cfg: &crate::config::Config) -> Result<monoio::net::TcpListener, String> {
    crate::net::listener::bind_reuseport(cfg.exapps_https_address).map_err(|e| {
        format!(
            "HP_EXAPPS_HTTPS_ADDRESS: cannot listen on {}: {e} (set HP_EXAPPS_HTTPS_ADDRESS to \
             a free host:port, or remove {} to turn HTTPS off)",
            cfg.exapps_https_address,
            cfg.https_cert_path().display()
        )
    })
}

/// The HTTPS frontend (harp-compat.md §6.2, H-20): on when `$LYRE_CERTS_DIR/cert.pem`
/// exists at start (SIGHUP re-reads it, see [`wait_for_stop_signal`]). A file that exists
/// but is unusable stops the start: serving plain HTTP only would hide the mistake.
fn https_config(cfg: &crate::config::Config) -> Result<Option<Arc<HttpsCert>>, String> {
    let path = cfg.https_cert_path();
    if !path.exists() {
        return Ok(None);
    }
    if overlaps(cfg.exapps_https_address, cfg.exapps_address) {
        // SO_REUSEPORT would let both bind and split connections between HTTP and TLS.
        return Err(format!(
            "HP_EXAPPS_HTTPS_ADDRESS: {} overlaps HP_EXAPPS_ADDRESS {} (HTTPS is on because {} \
             exists); give HTTPS its own port",
            cfg.exapps_https_address,
            cfg.exapps_address,
            path.display()
        ));
    }
    HttpsCert::load(&path)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| format!("LYRE_CERTS_DIR: HTTPS certificate unusable: {e}"))
}

/// Two listen addresses that would receive each other's connections (same port, and the
/// same IP or either one a wildcard).
fn overlaps(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn log_https(cfg: &crate::config::Config, on: bool) {
    let cert = cfg.https_cert_path();
    if on {
        info!(
            address = %cfg.exapps_https_address,
            cert = %cert.display(),
            alpn = "http/1.1",
            "HTTPS frontend on"
        );
    } else {
        info!(cert = %cert.display(), "HTTPS frontend off: no certificate file");
    }
}

/// FRP TLS: HaRP's PKI under `$LYRE_CERTS_DIR/frp` (generated when the directory is
/// missing), mutual TLS. `None` when `HP_FRP_DISABLE_TLS=true`.
fn frp_tls_config(cfg: &crate::config::Config) -> Result<crate::tls::FrpTls, String> {
    if cfg.frp_disable_tls {
        return crate::tls::FrpTls::from_mtls(None)
            .map_err(|e| format!("cannot make the throw-away FRP TLS certificate: {e}"));
    }
    let pki =
        crate::tls::ensure_frp_pki(&cfg.certs_dir, cfg.frp_cert_validity_days).map_err(|e| {
            format!(
                "LYRE_CERTS_DIR: cannot prepare the FRP certificates under {}: {e} (make the \
             directory writable, or set HP_FRP_DISABLE_TLS=true)",
                cfg.frp_certs_dir().display()
            )
        })?;
    let tls = crate::tls::server_config(&pki).map_err(|e| {
        format!(
            "LYRE_CERTS_DIR: FRP certificates in {} are unusable: {e}",
            pki.dir.display()
        )
    })?;
    Ok(crate::tls::FrpTls::Required(tls))
}

/// `HP_LOG_LEVEL` -> tracing filter. Logs go to stderr; the shared key is never logged.
fn init_logging(level: crate::config::LogLevel) {
    use crate::config::LogLevel;
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
    };
    // The access log goes to stdout, everything else to stderr: HaRP's HAProxy writes its
    // request lines on stdout, its agent's diagnostics on stderr (harp-compat.md §6.3).
    let writer = std::io::stdout
        .with_filter(|m: &tracing::Metadata<'_>| m.target() == crate::proxy::ACCESS_LOG_TARGET)
        .or_else(std::io::stderr);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "lyre={filter},{filter}"
        )))
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn https_and_http_listeners_must_not_overlap() {
        let rows = [
            ("0.0.0.0:8781", "0.0.0.0:8780", false),
            ("0.0.0.0:8780", "0.0.0.0:8780", true),
            ("127.0.0.1:8780", "0.0.0.0:8780", true),
            ("0.0.0.0:8780", "10.0.0.1:8780", true),
            ("127.0.0.1:8780", "10.0.0.1:8780", false),
            ("[::]:8780", "127.0.0.1:8780", true),
        ];
        for (a, b, want) in rows {
            assert_eq!(
                super::overlaps(a.parse().unwrap(), b.parse().unwrap()),
                want,
                "{a} vs {b}"
            );
        }
    }
}
