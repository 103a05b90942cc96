//! `ferry-delay-relay`: forwards TCP connections and UDP datagrams from `--listen` to `--to`, holding every byte
//! for `--delay-ms` before passing it on, in each direction — so a round trip through the relay takes 2 × delay
//! longer. The test kernel has no `netem`; tests run this in a namespace of a `netns::Lan` instead.
//!
//! - Order is kept and throughput is not limited: each direction is a FIFO of (deadline, bytes) drained by one
//!   sender that sleeps until the head's deadline (tokio's timer: the delay is N to N+1 ms). No task per packet.
//! - TCP: every accepted connection gets its own upstream connection; both directions are copied with the delay,
//!   a half-close (FIN) is passed on after the bytes before it, an error on one side resets the other. Bytes
//!   within their delay are "on the wire" and never slow the reader; once the destination falls behind (256 KiB
//!   overdue) the relay stops reading from the source, so a slow link pushes back instead of filling a deep
//!   queue in the relay. The handshake with the relay itself costs no extra round trip: only data is delayed.
//! - UDP: one upstream socket per client address (like a NAT), so QUIC works through it; a mapping idle for
//!   `--udp-idle-secs` (60) is dropped. Up to 32 MiB may wait per direction; beyond that datagrams are dropped,
//!   as a full router queue would.
//!
//! Prints `relay listening on IP:PORT` on stdout once bound (TCP and UDP on the same port), then runs until
//! killed; connection errors go to stderr.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

const USAGE: &str = "\
usage: ferry-delay-relay --listen IP:PORT --to IP:PORT --delay-ms N [--tcp] [--udp] [--udp-idle-secs S]

Forwards TCP connections and UDP datagrams arriving at --listen to --to, adding N ms in each direction
(a round trip grows by 2N). Both protocols unless --tcp or --udp is given; port 0 picks a free port.
Prints `relay listening on IP:PORT` once bound and runs until killed.";

/// Largest read from a TCP socket (one queue entry).
const TCP_CHUNK: usize = 64 * 1024;
/// Bytes past their deadline one TCP direction may hold (its destination is slower than its source) before the
/// relay stops reading from the source: backpressure, without a deep queue of its own.
const TCP_BACKLOG: usize = 256 * 1024;
/// Bytes one TCP direction may hold at all (in flight within the delay, or waiting).
const TCP_QUEUE_MAX: usize = 64 * 1024 * 1024;
/// Receive buffer asked for on every UDP socket (the kernel caps it at `net.core.rmem_max`, 4 MiB here): the
/// default 208 KiB overflows within milliseconds at a few hundred Mbit/s when the relay is not scheduled.
const UDP_RCVBUF: usize = 4 * 1024 * 1024;
/// Bytes one UDP direction may hold before datagrams are dropped.
const UDP_QUEUE_BYTES: usize = 32 * 1024 * 1024;

struct Args {
    listen: SocketAddr,
    to: SocketAddr,
    delay: Duration,
    tcp: bool,
    udp: bool,
    udp_idle: Duration,
}

fn parse_args() -> Result<Args> {
    let mut listen = None;
    let mut to = None;
    let mut delay = None;
    let (mut tcp, mut udp) = (false, false);
    let mut udp_idle = Duration::from_secs(60);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(parse_addr("--listen", &value("--listen")?)?),
            "--to" => to = Some(parse_addr("--to", &value("--to")?)?),
            "--delay-ms" => {
                let v = value("--delay-ms")?;
                let ms: u64 = v
                    .parse()
                    .with_context(|| format!("--delay-ms: not a number of milliseconds: {v:?}"))?;
                delay = Some(Duration::from_millis(ms));
            }
            "--udp-idle-secs" => {
                let v = value("--udp-idle-secs")?;
                let s: u64 =
                    v.parse().ok().filter(|s| *s > 0).with_context(|| {
                        format!("--udp-idle-secs: not a positive number: {v:?}")
                    })?;
                udp_idle = Duration::from_secs(s);
            }
            "--tcp" => tcp = true,
            "--udp" => udp = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if !tcp && !udp {
        (tcp, udp) = (true, true);
    }
    Ok(Args {
        listen: listen.context("--listen IP:PORT is required")?,
        to: to.context("--to IP:PORT is required")?,
        delay: delay.context("--delay-ms N is required")?,
        tcp,
        udp,
        udp_idle,
    })
}

fn parse_addr(name: &str, v: &str) -> Result<SocketAddr> {
    v.parse()
        .with_context(|| format!("{name}: not an IP:PORT address: {v:?}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}\n\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let (tcp, udp) = bind(&args).await?;
    let local = match (&tcp, &udp) {
        (Some(t), _) => t.local_addr()?,
        (None, Some(u)) => u.local_addr()?,
        (None, None) => unreachable!("at least one protocol"),
    };
    println!("relay listening on {local}");
    let mut tasks = Vec::new();
    if let Some(listener) = tcp {
        tasks.push(tokio::spawn(tcp_accept(listener, args.to, args.delay)));
    }
    if let Some(socket) = udp {
        tasks.push(tokio::spawn(udp_relay(
            socket,
            args.to,
            args.delay,
            args.udp_idle,
        )));
    }
    for t in tasks {
        t.await.context("relay task panicked")??;
    }
    Ok(())
}

/// TCP and UDP on the same port: with port 0, the UDP port the TCP listener got may be taken — try again.
async fn bind(args: &Args) -> Result<(Option<TcpListener>, Option<UdpSocket>)> {
    let listen = args.listen;
    if !args.tcp {
        let udp = udp_socket(listen, None).with_context(|| format!("cannot bind UDP {listen}"))?;
        return Ok((None, Some(udp)));
    }
    for _ in 0..20 {
        let tcp = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on TCP {listen}"))?;
        if !args.udp {
            return Ok((Some(tcp), None));
        }
        let at = tcp.local_addr()?;
        match udp_socket(at, None) {
            Ok(udp) => return Ok((Some(tcp), Some(udp))),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot bind UDP {at}")),
        }
    }
    bail!("no port free for both TCP and UDP on {}", listen.ip())
}

// ---------------------------------------------------------------------------------------------------------- TCP

async fn tcp_accept(listener: TcpListener, to: SocketAddr, delay: Duration) -> Result<()> {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                tokio::spawn(tcp_conn_task(client, peer, to, delay));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                eprintln!("relay: tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn tcp_conn_task(client: TcpStream, peer: SocketAddr, to: SocketAddr, delay: Duration) {
    if let Err(e) = tcp_conn(client, to, delay).await {
        if !is_disconnect(&e) {
            eprintln!("relay: tcp {peer} -> {to}: {e}");
        }
    }
}

async fn tcp_conn(mut client: TcpStream, to: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let mut upstream = match TcpStream::connect(to).await {
        Ok(s) => s,
        Err(e) => {
            // The client's connect already succeeded (with the relay): tell it with a reset.
            let _ = client.set_zero_linger();
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot connect upstream: {e}"),
            ));
        }
    };
    for s in [&client, &upstream] {
        // The source already chose when to send; Nagle here would hold small writes for an ACK.
        s.set_nodelay(true)?;
    }
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let result = tokio::try_join!(pump(cr, uw, delay), pump(ur, cw, delay));
    if result.is_err() {
        // One side failed: the other must not mistake the end for a clean close.
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    result.map(|_| ())
}

enum Chunk {
    Data(Vec<u8>),
    Eof,
}

/// One direction of a TCP connection: chunks waiting for their deadline, and the bytes not yet written.
#[derive(Default)]
struct Pipe {
    queue: Mutex<(VecDeque<(Instant, Chunk)>, usize)>,
    /// A chunk was queued.
    readable: Notify,
    /// A chunk was written.
    room: Notify,
}

impl Pipe {
    /// Whether the reader may read more: not while the writer is behind (its next chunk is overdue — the
    /// destination is slower than the source) with `TCP_BACKLOG` waiting, nor beyond `TCP_QUEUE_MAX` at all.
    /// Chunks still inside their delay are in flight, like bytes on a long wire, and never hold the reader back.
    fn has_room(&self) -> bool {
        let q = self.queue.lock().expect("pipe");
        let behind = q.0.front().is_some_and(|(due, _)| *due <= Instant::now());
        q.1 < TCP_QUEUE_MAX && !(behind && q.1 >= TCP_BACKLOG)
    }

    fn push(&self, due: Instant, chunk: Chunk) {
        let mut q = self.queue.lock().expect("pipe");
        if let Chunk::Data(d) = &chunk {
            q.1 += d.len();
        }
        q.0.push_back((due, chunk));
        drop(q);
        self.readable.notify_one();
    }

    fn head_due(&self) -> Option<Instant> {
        self.queue
            .lock()
            .expect("pipe")
            .0
            .front()
            .map(|(due, _)| *due)
    }

    fn pop(&self) -> Chunk {
        self.queue
            .lock()
            .expect("pipe")
            .0
            .pop_front()
            .expect("a head")
            .1
    }

    fn written(&self, n: usize) {
        self.queue.lock().expect("pipe").1 -= n;
        self.room.notify_one();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read; a clean end of `from` becomes a shutdown
/// of `to`. Returns when both are done, or at the first error.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    delay: Duration,
) -> std::io::Result<()> {
    let pipe = Pipe::default();
    let reading = async {
        let mut buf = vec![0u8; TCP_CHUNK];
        loop {
            loop {
                let room = pipe.room.notified();
                if pipe.has_room() {
                    break;
                }
                room.await;
            }
            let n = from.read(&mut buf).await?;
            let due = Instant::now() + delay;
            if n == 0 {
                pipe.push(due, Chunk::Eof);
                return Ok::<(), std::io::Error>(());
            }
            pipe.push(due, Chunk::Data(buf[..n].to_vec()));
        }
    };
    let writing = async {
        loop {
            let due = loop {
                let readable = pipe.readable.notified();
                if let Some(due) = pipe.head_due() {
                    break due;
                }
                readable.await;
            };
            if due > Instant::now() {
                sleep_until(due).await;
            }
            match pipe.pop() {
                Chunk::Data(bytes) => {
                    to.write_all(&bytes).await?;
                    pipe.written(bytes.len());
                }
                Chunk::Eof => {
                    to.shutdown().await?;
                    return Ok(());
                }
            }
        }
    };
    tokio::try_join!(reading, writing).map(|_| ())
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
    )
}

// ---------------------------------------------------------------------------------------------------------- UDP

/// Datagrams waiting for their deadline, bounded in bytes; one task drains it.
struct DelayQueue<T> {
    tx: mpsc::UnboundedSender<(Instant, T, Vec<u8>)>,
    queued: Arc<AtomicUsize>,
}

impl<T: Send + 'static> DelayQueue<T> {
    /// A queue and its sender task, which calls `send(dest, bytes)` at each deadline, in order.
    fn spawn<F, Fut>(send: F) -> (Self, JoinHandle<()>)
    where
        F: Fn(T, Vec<u8>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, T, Vec<u8>)>();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = Arc::clone(&queued);
        let task = tokio::spawn(async move {
            while let Some((due, dest, bytes)) = rx.recv().await {
                if due > Instant::now() {
                    sleep_until(due).await;
                }
                let len = bytes.len();
                send(dest, bytes).await;
                q.fetch_sub(len, Ordering::Relaxed);
            }
        });
        (DelayQueue { tx, queued }, task)
    }

    /// Queue `bytes` for `dest`, due `delay` from now; drops it when the queue is full.
    fn push(&self, delay: Duration, dest: T, bytes: Vec<u8>) {
        let len = bytes.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > UDP_QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return;
        }
        if self.tx.send((Instant::now() + delay, dest, bytes)).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

/// A non-blocking UDP socket bound to `bind` (and connected to `connect`) with a large receive buffer.
fn udp_socket(bind: SocketAddr, connect: Option<SocketAddr>) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, it only drops sooner.
    let _ = s.set_recv_buffer_size(UDP_RCVBUF);
    s.bind(&bind.into())?;
    if let Some(to) = connect {
        s.connect(&to.into())?;
    }
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// One client address and its own upstream socket.
struct Mapping {
    forward: DelayQueue<()>,
    /// Milliseconds since the relay's start at the last datagram either way.
    last: Arc<AtomicU64>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Mapping {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn udp_relay(
    socket: UdpSocket,
    to: SocketAddr,
    delay: Duration,
    idle: Duration,
) -> Result<()> {
    let socket = Arc::new(socket);
    let start = Instant::now();
    let ms = move || start.elapsed().as_millis() as u64;
    let listen = Arc::clone(&socket);
    let (back, _back_task) = DelayQueue::spawn(move |client: SocketAddr, bytes: Vec<u8>| {
        let listen = Arc::clone(&listen);
        async move {
            let _ = listen.send_to(&bytes, client).await;
        }
    });
    let back = Arc::new(back);
    let mut mappings: HashMap<SocketAddr, Mapping> = HashMap::new();
    let mut sweep = tokio::time::interval((idle / 4).max(Duration::from_secs(1)));
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(r) => r,
                    // An ICMP error for an earlier reply to some client: not this socket's problem.
                    Err(e) if is_disconnect(&e) || e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e).context("udp receive"),
                };
                let m = match mappings.entry(client) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => match new_mapping(client, to, delay, Arc::clone(&back), ms) {
                        Ok(m) => e.insert(m),
                        Err(e) => {
                            eprintln!("relay: udp {client} -> {to}: {e:#}");
                            continue;
                        }
                    },
                };
                m.last.store(ms(), Ordering::Relaxed);
                m.forward.push(delay, (), buf[..n].to_vec());
            }
            _ = sweep.tick() => {
                let now = ms();
                let idle_ms = idle.as_millis() as u64;
                mappings.retain(|_, m| now.saturating_sub(m.last.load(Ordering::Relaxed)) < idle_ms);
            }
        }
    }
}

fn new_mapping(
    client: SocketAddr,
    to: SocketAddr,
    delay: Duration,
    back: Arc<DelayQueue<SocketAddr>>,
    ms: impl Fn() -> u64 + Send + 'static,
) -> Result<Mapping> {
    let unspecified: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("address")
    } else {
        "[::]:0".parse().expect("address")
    };
    let upstream = udp_socket(unspecified, Some(to)).context("upstream socket")?;
    let upstream = Arc::new(upstream);
    let last = Arc::new(AtomicU64::new(ms()));
    let up = Arc::clone(&upstream);
    let (forward, forward_task) = DelayQueue::spawn(move |(), bytes: Vec<u8>| {
        let up = Arc::clone(&up);
        async move {
            let _ = up.send(&bytes).await;
        }
    });
    let seen = Arc::clone(&last);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match upstream.recv(&mut buf).await {
                Ok(n) => {
                    seen.store(ms(), Ordering::Relaxed);
                    back.push(delay, client, buf[..n].to_vec());
                }
                // ICMP port unreachable from `to` (nothing listening yet): keep the mapping.
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    });
    Ok(Mapping {
        forward,
        last,
        tasks: [forward_task, reader],
    })
}
