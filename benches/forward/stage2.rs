//! Stage 2: the real `lyre serve` binary as a subprocess (needs the proxy on main).

use super::Row;

pub fn rows() -> Vec<Row> {
    println!("stage 2 (lyre serve subprocess): not yet available");
    Vec::new()
}

pub fn idle_tunnels() {}
