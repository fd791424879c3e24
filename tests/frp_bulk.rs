//! Bulk transfer through the real frpc: 256 MiB each way, byte-exact (sha256), over TLS +
//! yamux, well past every window (256 KiB initial, our 1 MiB grant, frpc's 6 MiB).

mod frp_harness;

use std::io::{Read, Write};
use std::time::Duration;

use frp_harness::*;
use sha2::{Digest, Sha256};

const TOTAL_BYTES: usize = 256 * 1024 * 1024 + 12345;

fn pseudo_random_chunk(state: &mut u64, buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *b = (*state >> 24) as u8;
    }
}

fn bulk_case(tls: bool, tcp_mux: bool) {
    let server = start_server(tls);
    let port = pick_remote_port();
    let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp("bulk", port, tcp_echo())]);
    opts.tcp_mux = tcp_mux;
    let frpc = Frpc::start(&opts);
    wait_tunnel_echo(&frpc, port);
    let mut s = connect_tunnel(port, Duration::from_secs(5));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = TOTAL_BYTES;
        while left > 0 {
            let n = left.min(buf.len() - 7); // odd sizes cross frame boundaries
            pseudo_random_chunk(&mut state, &mut buf[..n]);
            h.update(&buf[..n]);
            w.write_all(&buf[..n]).unwrap();
            left -= n;
        }
        h.finalize()
    });
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    while got < TOTAL_BYTES {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "tunnel closed after {got} of {TOTAL_BYTES} bytes; frpc log:\n{}",
            frpc.log_text()
        );
        h.update(&buf[..n]);
        got += n;
    }
    let sent = writer.join().unwrap();
    assert_eq!(got, TOTAL_BYTES);
    assert_eq!(h.finalize(), sent, "echoed bytes differ from sent bytes");
    let log = frpc.log_text();
    assert!(
        !log.contains("window exceeded") && !log.contains("GoAway"),
        "frpc log:\n{log}"
    );
}

#[test]
fn t5_256_mib_each_way_tls_mux_byte_exact() {
    bulk_case(true, true);
}

#[test]
fn t5_256_mib_each_way_plaintext_no_mux_byte_exact() {
    bulk_case(false, false);
}
