//! Several hosts on one machine: a [`Lan`] of Linux network namespaces joined by veth pairs to a bridge, with rate
//! shaping (tc `tbf`), partitions that heal, and a [`Relay`] that adds delay (the kernel here has no `netem`).
//!
//! Layout of one `Lan` (everything made with `ip` and `tc`, nothing in the machine's own namespace):
//!
//! ```text
//!   namespace fy<pid>-<n>            (the "switch"): bridge br0, one port b<i>-<host> per host
//!   namespace fy<pid>-<n>-<host>     (one per host): lo, and h<i>-<host> = 10.NN.0.(i+1)/24
//! ```
//!
//! (`pid` whole, so a leftover's owner can be checked; `n` counts this process's Lans; `host` cut to 8 characters,
//! interface names to the kernel's 15.)
//!
//! Each veth pair is created directly inside its two namespaces, so interface names never meet in the machine's
//! namespace and the Lan has no route to anything outside it: all its traffic stays between its own hosts.
//! `NN` differs between Lans alive at the same time (pid and a process-wide counter) only to keep captures and
//! logs unambiguous; isolation does not depend on it.
//!
//! Dropping the `Lan` kills whatever still runs inside its namespaces and deletes them (the veths go with them),
//! also while a test panics. Declare the `Lan` before the nodes and relays that run in it, so they stop first.
//! The first `Lan` of a process also removes namespaces left by crashed runs of this harness (name prefix `fy`,
//! owner pid gone).
//!
//! Delay: the network-sync topology is `site ── relay ── seed` on one Lan, sites dialing the relay's address,
//! [`Relay`] forwarding TCP and UDP on the same port to the seed (ferry's libp2p control plane is TCP port P, its
//! QUIC data plane UDP port P):
//!
//! ```ignore
//! let lan = Lan::new(&["seed", "relay", "site1", "site2"]);
//! lan.shape("seed", 100);
//! // … start the seed's node on seed.addr(P) …
//! let relay = Relay::start(env!("CARGO_BIN_EXE_ferry-delay-relay"), lan.host("relay"), P,
//!                          lan.host("seed").addr(P), 10); // 10 ms each way: round trips +20 ms
//! // … sites dial relay.addr …
//! ```
//!
//! UDP (QUIC) goes through the relay datagram by datagram, so its congestion control sees the whole round trip
//! and the seed's shaped link. TCP is terminated at the relay: each leg has the Lan's sub-millisecond round trip
//! and only the bytes are held back, so request/response exchanges take 2 × delay longer but a bulk TCP stream is
//! not slowed by the delay (and its sender's view runs ahead of the receiver by the relay's buffers).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, Once};
use std::time::Duration;

use crate::cmd::ChildGuard;

/// Smallest token bucket for [`Lan::shape`]: at 100 Mbit/s, 64 KiB gives one TCP stream 95.6% of the rate
/// (iperf3, receiver side) — the rest is header overhead; faster links get 2 ms worth of bytes (at 1 Gbit/s
/// 64 KiB gave 918 Mbit/s, 256 KiB 956).
const TBF_MIN_BURST: u64 = 64 * 1024;
/// How long a packet may wait in a shaped queue before tbf drops it (the "router buffer").
const TBF_LATENCY: &str = "50ms";

/// Lans made by this process so far (part of every namespace name).
static LAN_COUNTER: AtomicU32 = AtomicU32::new(0);
/// `ip netns add` mounts `/run/netns` the first time; two at once in one process can stack mounts.
static NETNS_LOCK: Mutex<()> = Mutex::new(());
static CLEANUP: Once = Once::new();

/// One host of a [`Lan`]: a network namespace with one veth into the switch.
pub struct Host {
    name: String,
    ns: String,
    dev: String,
    bridge_port: String,
    ip: Ipv4Addr,
}

impl Host {
    /// The name the test gave this host.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on the Lan (`10.NN.0.(i+1)`).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `ip():port`.
    pub fn addr(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, port)
    }

    /// The network namespace's name (for `ip netns exec`, `ip -n`, `tc -n`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The host-side veth (inside [`Host::ns`]).
    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// `ip netns exec NS program` — add arguments, environment and stdio as with any `Command`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }
}

/// A switch and some hosts, each in its own network namespace; torn down on drop.
pub struct Lan {
    switch_ns: String,
    hosts: Vec<Host>,
    /// Namespaces created so far (also while [`Lan::new`] is half done, so a failure there cleans up too).
    namespaces: Vec<String>,
    /// Indexes of shaped hosts.
    shaped: Mutex<HashSet<usize>>,
}

impl Lan {
    /// A bridge and one namespace per host (names: lowercase letters, digits, `-`; unique), addresses
    /// `10.NN.0.1`, `10.NN.0.2`, … in the order given. Panics, naming the failed command, if any step fails.
    pub fn new(hosts: &[&str]) -> Lan {
        assert!(!hosts.is_empty(), "a Lan needs at least one host");
        assert!(hosts.len() < 250, "at most 249 hosts on one Lan");
        let mut seen = HashSet::new();
        for h in hosts {
            assert!(
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "host name {h:?}: use lowercase letters, digits and `-`"
            );
            assert!(seen.insert(*h), "host name {h:?} given twice");
        }
        // Before this process has any Lan: leftovers named with its own pid are stale too.
        CLEANUP.call_once(|| cleanup(true));

        let pid = std::process::id();
        let n = LAN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("fy{pid}-{n}");
        let net = 10 + (pid.wrapping_mul(31).wrapping_add(n) % 240) as u8;
        let mut lan = Lan {
            switch_ns: prefix.clone(),
            hosts: Vec::new(),
            namespaces: Vec::new(),
            shaped: Mutex::new(HashSet::new()),
        };

        lan.add_ns(&prefix);
        let sw = prefix.clone();
        run("ip", &["-n", &sw, "link", "set", "lo", "up"]);
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &sw, "link", "set", "br0", "up"]);

        for (i, name) in hosts.iter().enumerate() {
            let short: String = name.chars().take(8).collect();
            let host = Host {
                name: name.to_string(),
                ns: format!("{prefix}-{short}"),
                dev: ifname(&format!("h{i}-{name}")),
                bridge_port: ifname(&format!("b{i}-{name}")),
                ip: Ipv4Addr::new(10, net, 0, i as u8 + 1),
            };
            assert!(
                !lan.namespaces.contains(&host.ns),
                "host names {name:?} and another share their first 8 characters"
            );
            lan.add_ns(&host.ns);
            let (ns, dev, port) = (&host.ns, &host.dev, &host.bridge_port);
            run(
                "ip",
                &[
                    "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns",
                    &sw,
                ],
            );
            run("ip", &["-n", &sw, "link", "set", port, "master", "br0"]);
            run("ip", &["-n", &sw, "link", "set", port, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
            let cidr = format!("{}/24", host.ip);
            run("ip", &["-n", ns, "addr", "add", &cidr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            lan.hosts.push(host);
        }
        lan
    }

    /// The host named `name`; panics if there is none.
    #[track_caller]
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name:?} on this Lan"))
    }

    /// All hosts, in the order given to [`Lan::new`].
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The namespaces of this Lan: the switch's, then one per host.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Limit `host`'s link to `mbit` Mbit/s in both directions: a tbf (burst 64 KiB or 2 ms of bytes, whichever
    /// is more; at most 50 ms of queue) on the egress of the host's veth and on the egress of its bridge port.
    /// Replaces an earlier shape.
    #[track_caller]
    pub fn shape(&self, host: &str, mbit: u32) {
        assert!(mbit > 0, "shape to 0 Mbit/s: use cut instead");
        let (i, h) = self.index(host);
        let rate = format!("{mbit}mbit");
        let burst = (u64::from(mbit) * 1_000_000 / 8 / 500)
            .max(TBF_MIN_BURST)
            .to_string();
        for (ns, dev) in [(&h.ns, &h.dev), (&self.switch_ns, &h.bridge_port)] {
            run(
                "tc",
                &[
                    "-n",
                    ns,
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    &rate,
                    "burst",
                    &burst,
                    "latency",
                    TBF_LATENCY,
                ],
            );
        }
        self.shaped.lock().expect("shaped").insert(i);
    }

    /// Remove [`Lan::shape`]'s limits from `host`'s link (nothing to do if it was not shaped).
    #[track_caller]
    pub fn unshape(&self, host: &str) {
        let (i, h) = self.index(host);
        if !self.shaped.lock().expect("shaped").remove(&i) {
            return;
        }
        for (ns, dev) in [(&h.ns, &h.dev), (&self.switch_ns, &h.bridge_port)] {
            run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"]);
        }
    }

    /// Partition `host` from the rest of the Lan: its bridge port is disabled, so the switch silently drops
    /// everything from and to it. The host's own stack sees nothing (its link stays up, its sends succeed, no
    /// ICMP): connections just stop getting answers, as across a pulled cable further away.
    #[track_caller]
    pub fn cut(&self, host: &str) {
        let (_, h) = self.index(host);
        self.port_state(&h.bridge_port, "0");
    }

    /// Undo [`Lan::cut`]: the bridge port forwards again at once (no STP, no learning delay).
    #[track_caller]
    pub fn heal(&self, host: &str) {
        let (_, h) = self.index(host);
        self.port_state(&h.bridge_port, "3");
    }

    #[track_caller]
    fn port_state(&self, port: &str, state: &str) {
        run(
            "bridge",
            &[
                "-n",
                &self.switch_ns,
                "link",
                "set",
                "dev",
                port,
                "state",
                state,
            ],
        );
    }

    #[track_caller]
    fn index(&self, name: &str) -> (usize, &Host) {
        self.hosts
            .iter()
            .enumerate()
            .find(|(_, h)| h.name == name)
            .unwrap_or_else(|| panic!("no host {name:?} on this Lan"))
    }

    fn add_ns(&mut self, ns: &str) {
        let _lock = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        run("ip", &["netns", "add", ns]);
        self.namespaces.push(ns.to_string());
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts first, then the switch: a host's veth then dies with its namespace and its bridge port with it.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = delete_ns(ns) {
                eprintln!("netns teardown: {e}");
            }
        }
    }
}

/// Remove namespaces left behind by runs of this harness that crashed: names `fy<pid>-<n>[-host]` whose `pid`
/// is gone. [`Lan::new`] runs this once per process, before its first Lan (then also removing names with this
/// process's own pid, left by an earlier process that had it). Best effort: failures are printed, not raised.
pub fn cleanup_stale() {
    cleanup(false)
}

fn cleanup(include_own: bool) {
    let me = std::process::id();
    let out = match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netns cleanup: cannot run `ip netns list`: {e}");
            return;
        }
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = harness_pid(ns) else {
            continue;
        };
        if (include_own && pid == me) || (pid != me && !Path::new(&format!("/proc/{pid}")).exists())
        {
            eprintln!("netns cleanup: removing stale namespace {ns}");
            if let Err(e) = delete_ns(ns) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}

/// The owner pid in a namespace name this harness made (`fy<pid>-<n>` or `fy<pid>-<n>-<host>`).
fn harness_pid(ns: &str) -> Option<u32> {
    let rest = ns.strip_prefix("fy")?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?;
    let n = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Kill what still runs in `ns` (processes a test started there), then delete it.
fn delete_ns(ns: &str) -> Result<(), String> {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
    let _lock = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("ip")
        .args(["netns", "del", ns])
        .output()
        .map_err(|e| format!("cannot run `ip netns del {ns}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip netns del {ns}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// An interface name cut to the kernel's 15 bytes.
fn ifname(s: &str) -> String {
    s.chars().take(15).collect()
}

/// Runs `program args…`; panics with the command line and its stderr unless it exits 0.
#[track_caller]
fn run(program: &str, args: &[&str]) {
    let line = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
    assert!(
        out.status.success(),
        "`{line}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `ferry-delay-relay` running in a host's namespace, killed on drop.
pub struct Relay {
    guard: ChildGuard,
    /// Where clients connect: the relay host's address and the listening port.
    pub addr: SocketAddrV4,
}

impl Relay {
    /// Run `exe` (the `ferry-delay-relay` binary; in this crate's tests
    /// `env!("CARGO_BIN_EXE_ferry-delay-relay")`) in `host`'s namespace, listening on `host.ip():port` (TCP and
    /// UDP; 0 picks a free port) and forwarding to `to` with `delay_ms` added in each direction. Waits for its
    /// `relay listening on …` line.
    pub fn start(
        exe: impl AsRef<Path>,
        host: &Host,
        port: u16,
        to: SocketAddrV4,
        delay_ms: u32,
    ) -> Relay {
        Relay::start_with(exe, host, port, to, delay_ms, &[])
    }

    /// [`Relay::start`] with more arguments (`--tcp` or `--udp` alone).
    pub fn start_with(
        exe: impl AsRef<Path>,
        host: &Host,
        port: u16,
        to: SocketAddrV4,
        delay_ms: u32,
        extra: &[&str],
    ) -> Relay {
        let listen = host.addr(port).to_string();
        let mut cmd = host.command(exe.as_ref());
        cmd.args(["--listen", &listen, "--to", &to.to_string()])
            .args(["--delay-ms", &delay_ms.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.as_ref().display()));
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard::new(child, "ferry-delay-relay");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            // Keep the pipe open and drained for as long as the relay runs.
            lines.for_each(drop);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("ferry-delay-relay printed nothing within 30 s");
        let addr = line
            .strip_prefix("relay listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("ferry-delay-relay did not start (first line of stdout: {line:?})")
            });
        Relay { guard, addr }
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }
}
