use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let _ = lyre::config::Config::from_env(std::env::vars());
}
