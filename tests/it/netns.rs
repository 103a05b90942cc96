//! The several-hosts harness itself: a `Lan` of network namespaces, partitions that heal, and the delay relay.
//! Probes are small python3 scripts run inside the hosts' namespaces.

use std::net::SocketAddrV4;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_tests::cmd::{self, spawn_first_line, ChildGuard, Output};
use ferry_tests::netns::{self, Host, Lan, Relay};

const RELAY: &str = env!("CARGO_BIN_EXE_ferry-delay-relay");

/// TCP and UDP echo on one port; prints `ready` once both are bound. A TCP connection is echoed until the client
/// half-closes, then closed.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((host, port)); t.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((host, port))
def udp():
    while True:
        data, addr = u.recvfrom(65536)
        u.sendto(data, addr)
def conn(c):
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
    c.close()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept()
    threading.Thread(target=conn, args=(c,), daemon=True).start()
"#;

/// Sends `size` pseudo-random bytes over TCP (from a thread, half-closing at the end) while reading the echo to
/// EOF; prints `sent SHA256 received SHA256 first_reply_ms MS total_ms MS`. An optional 4th argument is the
/// timeout in s.
const TCP_CLIENT: &str = r#"
import hashlib, random, socket, sys, threading, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 20
data = random.Random(5).randbytes(size)
s = socket.create_connection((host, port), timeout=timeout)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t0 = time.monotonic()
s.sendall(data[:1])
first = s.recv(1)
first_ms = (time.monotonic() - t0) * 1000
def send():
    s.sendall(data[1:])
    s.shutdown(socket.SHUT_WR)
sender = threading.Thread(target=send); sender.start()
got = hashlib.sha256(first)
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got.update(chunk)
sender.join()
total_ms = (time.monotonic() - t0) * 1000
print("sent", hashlib.sha256(data).hexdigest(), "received", got.hexdigest(), "first_reply_ms", round(first_ms, 2),
      "total_ms", round(total_ms, 2))
"#;

/// Sends `count` UDP datagrams one after another, each waiting for its echo; prints the round trips in ms.
const UDP_CLIENT: &str = r#"
import os, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
rtts = []
for i in range(count):
    payload = os.urandom(1000)
    t0 = time.monotonic()
    s.sendto(payload, (host, port))
    data, _ = s.recvfrom(65536)
    rtts.append((time.monotonic() - t0) * 1000)
    assert data == payload, "echo differs"
print(" ".join("%.2f" % r for r in rtts))
"#;

/// The echo server on `host:port`, killed on drop.
fn echo_server(host: &Host, port: u16) -> ChildGuard {
    let mut c = host.command("python3");
    c.args(["-c", ECHO_SERVER, &host.ip().to_string(), &port.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let (guard, line) = spawn_first_line(&mut c, "python3 echo server", Duration::from_secs(20));
    assert_eq!(line.trim(), "ready", "echo server did not start");
    guard
}

fn python(host: &Host, script: &str, args: &[String], timeout: Duration) -> Output {
    let mut c = host.command("python3");
    c.arg("-c").arg(script).args(args);
    cmd::run_timeout(&mut c, timeout)
}

/// How long a [`tcp_echo`] took.
struct Echo {
    /// The first byte's round trip, ms.
    first_ms: f64,
    /// From the first byte sent to the end of the echo, ms.
    total_ms: f64,
}

/// TCP echo of `size` bytes from `from` to `to`, checked byte for byte (by hash).
#[track_caller]
fn tcp_echo(from: &Host, to: SocketAddrV4, size: usize) -> Echo {
    let args = [to.ip().to_string(), to.port().to_string(), size.to_string()];
    let out = python(from, TCP_CLIENT, &args, Duration::from_secs(60)).ok();
    let f: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(
        f.len() == 8 && f[0] == "sent" && f[2] == "received",
        "unexpected output:\n{out}"
    );
    assert_eq!(f[1], f[3], "the echoed bytes differ from those sent");
    Echo {
        first_ms: f[5].parse().expect("first_reply_ms"),
        total_ms: f[7].parse().expect("total_ms"),
    }
}

/// Round trips (ms) of `count` UDP echoes from `from` to `to`.
#[track_caller]
fn udp_rtts(from: &Host, to: SocketAddrV4, count: usize) -> Vec<f64> {
    let args = [
        to.ip().to_string(),
        to.port().to_string(),
        count.to_string(),
    ];
    let out = python(from, UDP_CLIENT, &args, Duration::from_secs(60)).ok();
    let rtts: Vec<f64> = out
        .stdout
        .split_whitespace()
        .map(|r| r.parse().expect("a number"))
        .collect();
    assert_eq!(rtts.len(), count, "unexpected output:\n{out}");
    rtts
}

/// The names `ip netns list` shows.
fn listed_namespaces() -> Vec<String> {
    cmd::run(Command::new("ip").args(["netns", "list"]))
        .ok()
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn hosts_reach_each_other_and_a_cut_heals() {
    let lan = Lan::new(&["a", "b"]);
    let names: Vec<String> = lan.namespaces().to_vec();
    assert_eq!(names.len(), 3, "a switch and two hosts");
    let (a, b) = (lan.host("a"), lan.host("b"));
    assert_ne!(a.ip(), b.ip());
    let listed = listed_namespaces();
    for ns in &names {
        assert!(listed.contains(ns), "{ns} missing from {listed:?}");
    }

    let echo = echo_server(b, 7000);
    tcp_echo(a, b.addr(7000), 100_000);
    udp_rtts(a, b.addr(7000), 3);

    // A cut host gets nothing through: the connection attempt times out (no refusal, no ICMP).
    lan.cut("b");
    let args = [b.ip().to_string(), "7000".into(), "1000".into(), "2".into()];
    let out = python(a, TCP_CLIENT, &args, Duration::from_secs(60));
    assert_ne!(out.code, Some(0), "reached a cut host:\n{out}");
    assert!(
        out.stderr.contains("timed out"),
        "expected a timeout:\n{out}"
    );

    lan.heal("b");
    tcp_echo(a, b.addr(7000), 100_000);

    drop(echo);
    drop(lan);
    let listed = listed_namespaces();
    for ns in &names {
        assert!(!listed.contains(ns), "{ns} left behind: {listed:?}");
    }
}

#[test]
fn the_relay_delays_udp_and_tcp_and_delivers_exact_bytes() {
    const DELAY_MS: u32 = 40;
    let lan = Lan::new(&["seed", "relay", "site"]);
    lan.shape("seed", 100);
    let (seed, relay_host, site) = (lan.host("seed"), lan.host("relay"), lan.host("site"));
    let _echo = echo_server(seed, 7100);
    let relay = Relay::start(RELAY, relay_host, 7100, seed.addr(7100), DELAY_MS);
    assert_eq!(relay.addr, relay_host.addr(7100));

    // Direct round trips are printed for comparison only: the assertions are lower bounds.
    let direct = udp_rtts(site, seed.addr(7100), 5);
    let relayed = udp_rtts(site, relay.addr, 10);
    let floor = 2.0 * f64::from(DELAY_MS);
    for rtt in &relayed {
        assert!(
            *rtt >= floor,
            "a UDP round trip through the relay took {rtt} ms < {floor} ms: {relayed:?}"
        );
    }
    eprintln!("udp round trips, direct: {direct:?} ms; through the relay: {relayed:?} ms");

    // TCP: 4 MiB each way, byte for byte, the half-close passed through and back. The seed's link is shaped to
    // 100 Mbit/s, so 4 MiB cannot cross it in less than 335 ms.
    let echo = tcp_echo(site, relay.addr, 4 << 20);
    let (first, total) = (echo.first_ms, echo.total_ms);
    eprintln!("tcp through the relay: first round trip {first} ms, 4 MiB echoed in {total} ms");
    assert!(
        first >= floor,
        "a TCP round trip through the relay took {first} ms < {floor} ms"
    );
    assert!(
        total >= 300.0,
        "4 MiB crossed a 100 Mbit/s link in {total} ms: is the shape in place?"
    );

    // Several connections at once.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| tcp_echo(site, relay.addr, 256 << 10));
        }
    });

    // The unshaped direct path still works after shaping is removed.
    lan.unshape("seed");
    tcp_echo(site, seed.addr(7100), 100_000);
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let mut names = Vec::new();
    let mut sleeper = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lan = Lan::new(&["p", "q"]);
        names = lan.namespaces().to_vec();
        lan.shape("p", 10);
        lan.cut("q");
        // Started without a guard: the Lan's teardown must end it.
        sleeper = Some(
            lan.host("q")
                .command("sleep")
                .arg("600")
                .spawn()
                .expect("spawn sleep"),
        );
        panic!("the test fails here");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 3);
    let listed = listed_namespaces();
    for ns in &names {
        assert!(!listed.contains(ns), "{ns} left behind: {listed:?}");
    }
    let mut sleeper = sleeper.expect("sleeper");
    let status = sleeper.wait().expect("wait");
    assert!(!status.success(), "sleep 600 ended on its own?");
}

#[test]
fn stale_namespaces_of_dead_runs_are_removed() {
    let lan = Lan::new(&["x"]);
    // A pid that no longer exists: a child that has been reaped.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let dead = child.id();
    child.wait().expect("wait");
    let stale = format!("fy{dead}-0-gone");
    cmd::run_ok("ip", ["netns", "add", stale.as_str()]);
    netns::cleanup_stale();
    let listed = listed_namespaces();
    assert!(
        !listed.contains(&stale),
        "{stale} survived the cleanup: {listed:?}"
    );
    // A live owner's namespaces (here: this process's) are left alone.
    for ns in lan.namespaces() {
        assert!(listed.contains(ns), "{ns} of a live Lan removed");
    }
}
