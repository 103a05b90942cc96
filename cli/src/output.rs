//! Printing data to stdout. A closed pipe (`ferry ls | head -1`) ends the program quietly.

use std::io::Write;

/// Print a line; exit 0 if stdout is gone.
pub fn line(s: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{s}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(2);
    }
}

/// Print a value as pretty JSON.
pub fn json<T: serde::Serialize>(v: &T) {
    line(serde_json::to_string_pretty(v).expect("serialisable"));
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
