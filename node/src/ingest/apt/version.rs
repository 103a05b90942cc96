//! Debian version numbers (`[epoch:]upstream[-revision]`) ordered as dpkg orders them, and the relations of
//! dependency fields (`<<`, `<=`, `=`, `>=`, `>>`).

use std::cmp::Ordering;

/// A relation in a dependency (`libc6 (>= 2.36)`) or a request (`nginx (<< 1.23)`, `curl=7.88.1-10`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// The operator at the start of `s`, and what follows it.
    pub fn parse_prefix(s: &str) -> Option<(Op, &str)> {
        for (text, op) in [
            ("<<", Op::Lt),
            ("<=", Op::Le),
            (">=", Op::Ge),
            (">>", Op::Gt),
            ("=", Op::Eq),
            ("<", Op::Le),
            (">", Op::Ge),
        ] {
            if let Some(rest) = s.strip_prefix(text) {
                return Some((op, rest));
            }
        }
        None
    }

    /// Whether version `have` stands in this relation to `want`.
    pub fn holds(self, have: &str, want: &str) -> bool {
        let o = compare(have, want);
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
        }
    }

    /// As written in a control file.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// Split a version into epoch, upstream version and revision (`""` when there is none).
fn split(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), r)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((up, rev)) => (epoch, up, rev),
        None => (epoch, rest, ""),
    }
}

/// dpkg's weight of a character in the non-digit parts: `~` before everything (even the end), then the end,
/// then letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit parts, the first by [`weight`], the second numerically.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Order two Debian versions as `dpkg --compare-versions` does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_as_dpkg() {
        // (a, b, a compared to b) — cases from dpkg's own test suite and Debian policy 5.6.12.
        let cases = [
            ("1.0", "1.0", Ordering::Equal),
            ("1.0", "1.0-0", Ordering::Equal),
            ("0:1.0", "1.0", Ordering::Equal),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0~~", "1.0~~a", Ordering::Less),
            ("1.0~", "1.0", Ordering::Less),
            ("1.0", "1.0a", Ordering::Less),
            ("1.0a", "1.0+", Ordering::Less),
            ("1.0+", "1.0.1", Ordering::Less),
            ("1:0.1", "2.0", Ordering::Greater),
            ("2.36-9+deb12u4", "2.36-9+deb12u13", Ordering::Less),
            ("3.0.11-1~deb12u2", "3.0.11-1", Ordering::Less),
            ("1.2.13.dfsg-1", "1:1.2.13.dfsg-1", Ordering::Less),
            ("10", "9", Ordering::Greater),
            ("1.010", "1.10", Ordering::Equal),
            ("1.0-1", "1.0-1.1", Ordering::Less),
            ("a", "", Ordering::Greater),
            ("1.2.3-4ubuntu1", "1.2.3-4", Ordering::Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
        assert!(Op::Ge.holds("2.36-9", "2.36"));
        assert!(!Op::Gt.holds("2.36", "2.36-0"));
        assert!(Op::Lt.holds("1.0~rc1", "1.0"));
        assert_eq!(Op::parse_prefix(">= 1"), Some((Op::Ge, " 1")));
        assert_eq!(Op::parse_prefix("> 1"), Some((Op::Ge, " 1")));
        assert_eq!(Op::parse_prefix("<< 1"), Some((Op::Lt, " 1")));
    }

    /// Random versions built from the characters that matter, ordered by this code and by the real
    /// `dpkg --compare-versions`, when dpkg is on the machine.
    #[test]
    fn agrees_with_dpkg_on_random_versions() {
        if std::process::Command::new("dpkg")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("no dpkg here; skipped");
            return;
        }
        let parts = [
            "0", "1", "10", "2", "a", "b", "~", "+", ".", "~rc", "1:", "-1", "-0",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let version = |next: &mut dyn FnMut() -> u64| {
            let mut v = String::from("1");
            for _ in 0..(next() % 5) {
                let p = parts[(next() % parts.len() as u64) as usize];
                if p == "1:" || (p.starts_with('-') && v.contains('-')) {
                    continue;
                }
                v.push_str(p);
            }
            v
        };
        for _ in 0..200 {
            let (a, b) = (version(&mut next), version(&mut next));
            let lt = std::process::Command::new("dpkg")
                .args(["--compare-versions", &a, "lt", &b])
                .status()
                .unwrap()
                .success();
            let eq = std::process::Command::new("dpkg")
                .args(["--compare-versions", &a, "eq", &b])
                .status()
                .unwrap()
                .success();
            let dpkg = if lt {
                Ordering::Less
            } else if eq {
                Ordering::Equal
            } else {
                Ordering::Greater
            };
            assert_eq!(compare(&a, &b), dpkg, "{a:?} vs {b:?}");
        }
    }
}
