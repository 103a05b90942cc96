//! Printing data to stdout. A closed pipe (`ferry ls | head -1`) ends the program quietly.

use std::io::Write;

/// Print a line; exit 0 if stdout is gone. For a command a node runs for a client, the line goes to the client
/// (and nowhere once the client has gone: the command still finishes).
pub fn line(s: impl std::fmt::Display) {
    if let Some(sink) = crate::remote::sink() {
        let _ = sink.stdout(format!("{s}\n").as_bytes());
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{s}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(2);
    }
}

/// Write bytes to stdout as they are (a script, a page); exit 0 if stdout is gone.
pub fn raw(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(2);
    }
}

/// A message for people on stderr (the client's, for a command a node runs for a client).
pub fn note(s: impl std::fmt::Display) {
    match crate::remote::sink() {
        Some(sink) => {
            let _ = sink.stderr(format!("{s}\n").as_bytes());
        }
        None => eprintln!("{s}"),
    }
}

/// Print a value as pretty JSON.
pub fn json<T: serde::Serialize>(v: &T) {
    line(serde_json::to_string_pretty(v).expect("serialisable"));
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    ferry_node::progress::human_bytes(n)
}
