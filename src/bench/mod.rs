//! The built-in load generator (`lyre bench`). STUB: owned by helper "pump".

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Target URL (http://host:port/path).
    #[arg(long)]
    pub url: String,
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    Err(format!("lyre bench: not implemented yet ({})", args.url))
}
