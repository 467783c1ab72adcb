//! Free loopback ports for the nodes' API (TCP) and raft (QUIC over UDP) listeners.
//!
//! A port is found by binding port 0 and releasing it; the process-wide set keeps two
//! parallel tests of this binary from being handed the same port. Another program could
//! still take a released port before the node binds it; the window is milliseconds.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// How many times to ask the kernel before giving up on a fresh port.
const PORT_ATTEMPTS_MAX: usize = 64;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn claim(port: u16) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(HashSet::new).insert(port)
}

/// Claims `n` consecutive ports from `base` for this process (all or none): `false` when
/// one of them was handed out already, e.g. to a parallel test's `consentry demo`.
pub fn claim_range(base: u16, n: u16) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    let ports: Vec<u16> = (0..n).map(|k| base.saturating_add(k)).collect();
    if ports.iter().any(|p| set.contains(p)) {
        return false;
    }
    set.extend(ports);
    true
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_tcp_port() -> u16 {
    for _ in 0..PORT_ATTEMPTS_MAX {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0/tcp");
        let port = listener.local_addr().expect("local_addr").port();
        // Also free for UDP, so a raft port picked later can never equal it by accident.
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && claim(port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after {PORT_ATTEMPTS_MAX} attempts");
}

/// A UDP port on 127.0.0.1 that nothing was bound to a moment ago.
pub fn free_udp_port() -> u16 {
    for _ in 0..PORT_ATTEMPTS_MAX {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0/udp");
        let port = socket.local_addr().expect("local_addr").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && claim(port) {
            return port;
        }
    }
    panic!("no free UDP port on 127.0.0.1 after {PORT_ATTEMPTS_MAX} attempts");
}
