//! The `lyre` binary: parses the command line and environment, then hands over to the
//! runtime. The only place that formats a fatal error for the operator and picks an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

use lyre::config::Config;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "lyre",
    version,
    about = "Nextcloud ExApp proxy appliance (HaRP drop-in)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance (the default), configured by HP_* / LYRE_* variables.
    #[command(after_help = serve_after_help())]
    Serve(ServeArgs),
    /// Run Lyre with an embedded demo upstream on 127.0.0.1:8780; nothing else needed.
    Demo(DemoArgs),
    /// Built-in HTTP/1.1 load generator.
    Bench(lyre::bench::BenchArgs),
    /// Generate HaRP's FRP PKI (CA, server, client) under <certs-dir>/frp if it is missing.
    Certs(CertsArgs),
    /// Container health check of a running `lyre serve` (same environment): exit 0 if its
    /// heartbeat answers and its listeners accept, else 1 naming what failed.
    Healthcheck,
}

#[derive(clap::Args)]
struct CertsArgs {
    /// Certificates directory (HaRP's /certs); the PKI goes to <dir>/frp.
    #[arg(long, env = "LYRE_CERTS_DIR", default_value = "/certs")]
    certs_dir: std::path::PathBuf,
    /// Validity of generated certificates, in days.
    #[arg(long, env = "HP_FRP_CERT_VALIDITY_DAYS", default_value_t = 5000)]
    days: u32,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Static route PREFIX=HOST:PORT (repeatable; added to LYRE_ROUTES).
    #[arg(long = "route", value_name = "PREFIX=HOST:PORT")]
    routes: Vec<String>,
    /// Listen address (overrides HP_EXAPPS_ADDRESS).
    #[arg(long)]
    listen: Option<String>,
    /// Worker threads (overrides LYRE_WORKERS).
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Where the demo listens.
    #[arg(long, default_value = "127.0.0.1:8780")]
    listen: String,
    /// Worker threads (default: number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    // First, before any thread: may restart this process with a glibc tunable.
    lyre::runtime::memcpy::prefer_vector_copies();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo(args),
        Command::Bench(args) => lyre::bench::run(args),
        Command::Certs(args) => certs(args),
        Command::Healthcheck => healthcheck(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("lyre: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `lyre serve --help` lists every variable it reads (defaults and meanings: README).
fn serve_after_help() -> String {
    use lyre::config::names;
    let mut all = vec![names::NC_INSTANCE_URL];
    all.extend_from_slice(names::read_names());
    let names = all.join(", ");
    format!(
        "Environment (HaRP's HP_* names, plus LYRE_*; defaults and meanings in the README's \
         Configuration table; HP_SHARED_KEY or HP_SHARED_KEY_FILE is required):\n  {names}"
    )
}

fn serve(args: ServeArgs) -> Result<(), String> {
    // From here a SIGTERM during start-up is not fatal by default disposition: it waits for
    // `runtime::run`, which exits 0 on it (H-102), during start-up too.
    lyre::runtime::block_stop_signals();
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    apply_overrides(&mut env, &args);
    let (cfg, warnings) = Config::from_env(env).map_err(|e| e.to_string())?;
    lyre::runtime::run(cfg, warnings)
}

/// CLI flags win over the environment: they are applied as if the variable were set.
fn apply_overrides(env: &mut Vec<(String, String)>, args: &ServeArgs) {
    let mut set = |k: &str, v: String| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v));
    };
    if let Some(l) = &args.listen {
        set("HP_EXAPPS_ADDRESS", l.clone());
    }
    if let Some(n) = args.workers {
        set("LYRE_WORKERS", n.to_string());
    }
    if !args.routes.is_empty() {
        let existing = std::env::var("LYRE_ROUTES").unwrap_or_default();
        let mut all: Vec<String> = existing
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .collect();
        all.extend(args.routes.iter().cloned());
        set("LYRE_ROUTES", all.join(","));
    }
}

fn demo(args: DemoArgs) -> Result<(), String> {
    let upstream = lyre::demo::start_upstream().map_err(|e| format!("demo upstream: {e}"))?;
    let env = lyre::demo::demo_env(&args.listen, upstream, args.workers);
    let (cfg, warnings) = Config::from_env(env).map_err(|e| e.to_string())?;
    lyre::demo::print_banner(&args.listen);
    lyre::runtime::run(cfg, warnings)
}

fn healthcheck() -> Result<(), String> {
    let (cfg, _warnings) = Config::from_env(std::env::vars()).map_err(|e| e.to_string())?;
    let checked = lyre::control::healthcheck::run(&cfg).map_err(|e| format!("unhealthy: {e}"))?;
    println!("healthy: {checked}");
    Ok(())
}

fn certs(args: CertsArgs) -> Result<(), String> {
    if args.days == 0 {
        return Err("HP_FRP_CERT_VALIDITY_DAYS: must be at least 1 day".into());
    }
    let existed = args.certs_dir.join("frp").is_dir();
    let pki = lyre::tls::ensure_frp_pki(&args.certs_dir, args.days)
        .map_err(|e| format!("LYRE_CERTS_DIR: cannot create the FRP PKI: {e}"))?;
    let verb = if existed {
        "kept existing"
    } else {
        "generated"
    };
    println!("{verb} FRP PKI in {}", pki.dir.display());
    Ok(())
}
