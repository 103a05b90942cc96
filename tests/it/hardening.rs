//! What a stranger can make a node hold is bounded (issue 20): a connection that sends part of a request's head,
//! or nothing, is dropped after the header timeout; connections beyond the caps, in all and from one client, are
//! answered 503 at once while the others are served; a request path of thousands of segments is answered at
//! once (414 past the limit); a `Range` past 64 bits means the whole body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry_tests::ferry::Store;
use ferry_tests::node::Node;

use crate::repos::raw;

/// Read from `c` until it is closed by the node (`Ok` with what came), or `wait` passes (`Err`).
pub(crate) fn closed_within(c: &mut TcpStream, wait: Duration) -> Result<Vec<u8>, String> {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    match c.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
        Err(e) => Err(format!(
            "still open after {wait:?} ({e}), {} bytes read",
            got.len()
        )),
    }
}

/// A connection to `addr` from the loopback address `src` (the node tells clients apart by address).
fn connect_from(src: [u8; 4], addr: &str) -> TcpStream {
    let to: SocketAddr = addr.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn half_open_and_surplus_connections_deep_paths_and_huge_ranges_are_bounded() {
    let s = Store::new();
    let file = s.tmp_path("notes.txt");
    let content: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&file, &content).unwrap();
    s.add("f@1", &[&format!("file:{}", file.display())]);
    std::fs::write(
        s.path.join("node.toml"),
        "[http]\nheader_timeout_secs = 2\nmax_connections = 6\nmax_connections_per_client = 4\n",
    )
    .unwrap();
    let node = Node::start(&s.path);
    let addr = node.addr.clone();

    // Half a request's head, then silence: dropped after the header timeout (was: held forever).
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /repos/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // Nothing at all: the same.
    let mut silent = TcpStream::connect(&addr).unwrap();
    let t = Instant::now();
    for c in [&mut half, &mut silent] {
        closed_within(c, Duration::from_secs(30)).unwrap();
    }
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());

    // Four idle connections from this address: the fifth is answered 503 at once, naming why.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = TcpStream::connect(&addr).unwrap();
    fifth
        .write_all(b"GET /repos/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = closed_within(&mut fifth, Duration::from_secs(10)).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("connections open from 127.0.0.1"),
        "{answer}"
    );
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    // Another address is still served (the total cap is 6), and once the idle ones go, this one is too.
    let mut other = connect_from([127, 0, 0, 2], &addr);
    other
        .write_all(b"GET /repos/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = closed_within(&mut other, Duration::from_secs(10)).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(raw(&addr, "GET", "/repos/", &[]).status, 200);

    // A path of 2,000 segments is looked up in linear time and not found; one past the limit is refused.
    let deep = format!("/repos/{}x", "a/".repeat(2000));
    assert_eq!(raw(&addr, "GET", &deep, &[]).status, 404);
    let deeper = format!("/repos/{}x", "a/".repeat(3000));
    let r = raw(&addr, "GET", &deeper, &[]);
    assert_eq!(r.status, 414);
    assert!(
        String::from_utf8_lossy(&r.body).contains("at most 4096"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    // A suffix range longer than any u64 asks for the whole body (was: 416).
    let r = raw(
        &addr,
        "GET",
        "/repos/f/1/notes.txt",
        &[("Range", "bytes=-99999999999999999999")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, content);
    assert_eq!(node.stop(), Some(0));
}
