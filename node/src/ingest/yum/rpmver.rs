//! rpm versions (`[epoch:]version[-release]`) ordered as rpm orders them (`rpmvercmp`), and the ranges of
//! dependencies (`libfoo >= 1.2`) and whether two of them overlap, as rpm decides whether a provide satisfies a
//! requirement.

use std::cmp::Ordering;
use std::fmt;

/// `rpmvercmp`: two version (or release) strings in rpm's order. Runs of digits compare as numbers, runs of
/// letters as text, a digit run is newer than a letter run, `~` sorts before anything (even the end) and `^`
/// after the end but before anything else.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while !one.is_empty() || !two.is_empty() {
        while one.first().is_some_and(|&c| sep(c)) {
            one = &one[1..];
        }
        while two.first().is_some_and(|&c| sep(c)) {
            two = &two[1..];
        }
        let (c1, c2) = (one.first().copied(), two.first().copied());
        if c1 == Some(b'~') || c2 == Some(b'~') {
            if c1 != Some(b'~') {
                return Ordering::Greater;
            }
            if c2 != Some(b'~') {
                return Ordering::Less;
            }
            (one, two) = (&one[1..], &two[1..]);
            continue;
        }
        if c1 == Some(b'^') || c2 == Some(b'^') {
            if c1.is_none() {
                return Ordering::Less;
            }
            if c2.is_none() {
                return Ordering::Greater;
            }
            if c1 != Some(b'^') {
                return Ordering::Greater;
            }
            if c2 != Some(b'^') {
                return Ordering::Less;
            }
            (one, two) = (&one[1..], &two[1..]);
            continue;
        }
        let (Some(c1), Some(_)) = (c1, c2) else {
            break;
        };
        let numeric = c1.is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let n1 = one.iter().take_while(|c| class(c)).count();
        let n2 = two.iter().take_while(|c| class(c)).count();
        let (s1, s2) = (&one[..n1], &two[..n2]);
        (one, two) = (&one[n1..], &two[n2..]);
        if s2.is_empty() {
            // Different kinds of run: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            let z1 = s1.iter().take_while(|&&c| c == b'0').count();
            let z2 = s2.iter().take_while(|&&c| c == b'0').count();
            let (s1, s2) = (&s1[z1..], &s2[z2..]);
            s1.len().cmp(&s2.len()).then_with(|| s1.cmp(s2))
        } else {
            s1.cmp(s2)
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// An epoch, version and release. A missing epoch is 0; a missing release matches any.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Evr {
    /// The epoch (0 when not given).
    pub epoch: u64,
    /// The version.
    pub version: String,
    /// The release, when given.
    pub release: Option<String>,
}

impl Evr {
    /// Parse `[epoch:]version[-release]`.
    pub fn parse(text: &str) -> Result<Evr, String> {
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => (
                e.parse()
                    .map_err(|_| format!("{text:?}: the epoch {e:?} is not a number"))?,
                rest,
            ),
            None => (0, text),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v, Some(r.to_string())),
            None => (rest, None),
        };
        if version.is_empty() || release.as_deref() == Some("") {
            return Err(format!("{text:?} is not [epoch:]version[-release]"));
        }
        Ok(Evr {
            epoch,
            version: version.to_string(),
            release,
        })
    }

    /// From the attributes of primary.xml (`epoch`, `ver`, `rel`).
    pub fn from_parts(epoch: Option<&str>, ver: &str, rel: Option<&str>) -> Result<Evr, String> {
        Ok(Evr {
            epoch: match epoch.filter(|e| !e.is_empty()) {
                Some(e) => e
                    .parse()
                    .map_err(|_| format!("the epoch {e:?} is not a number"))?,
                None => 0,
            },
            version: ver.to_string(),
            release: rel.filter(|r| !r.is_empty()).map(str::to_string),
        })
    }

    /// rpm's order; the releases count only when both have one.
    pub fn compare(&self, other: &Evr) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| vercmp(&self.version, &other.version))
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => vercmp(a, b),
                _ => Ordering::Equal,
            })
    }

    /// The total order packages are ranked by (a missing release sorts first).
    pub fn rank(&self, other: &Evr) -> Ordering {
        self.compare(other)
            .then_with(|| self.release.is_some().cmp(&other.release.is_some()))
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if let Some(r) = &self.release {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

/// Two `[epoch:]version[-release]` texts in rpm's order (text that does not parse compares by [`vercmp`]).
pub fn compare_text(a: &str, b: &str) -> Ordering {
    match (Evr::parse(a), Evr::parse(b)) {
        (Ok(x), Ok(y)) => x.rank(&y),
        _ => vercmp(a, b),
    }
}

/// A comparison of a dependency: `<`, `<=`, `=`, `>=`, `>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flags {
    /// `<` (`LT`)
    Lt,
    /// `<=` (`LE`)
    Le,
    /// `=` (`EQ`)
    Eq,
    /// `>=` (`GE`)
    Ge,
    /// `>` (`GT`)
    Gt,
}

impl Flags {
    /// From primary.xml's `flags` attribute.
    pub fn from_xml(s: &str) -> Option<Flags> {
        Some(match s {
            "LT" => Flags::Lt,
            "LE" => Flags::Le,
            "EQ" => Flags::Eq,
            "GE" => Flags::Ge,
            "GT" => Flags::Gt,
            _ => return None,
        })
    }

    /// The operator at the start of `s` (`<=`, `>=`, `==`, `=`, `<`, `>`), and what follows.
    pub fn parse_prefix(s: &str) -> Option<(Flags, &str)> {
        for (text, f) in [
            ("<=", Flags::Le),
            (">=", Flags::Ge),
            ("==", Flags::Eq),
            ("=", Flags::Eq),
            ("<", Flags::Lt),
            (">", Flags::Gt),
        ] {
            if let Some(rest) = s.strip_prefix(text) {
                return Some((f, rest));
            }
        }
        None
    }

    fn less(self) -> bool {
        matches!(self, Flags::Lt | Flags::Le)
    }

    fn greater(self) -> bool {
        matches!(self, Flags::Gt | Flags::Ge)
    }

    fn equal(self) -> bool {
        matches!(self, Flags::Le | Flags::Eq | Flags::Ge)
    }

    /// As rpm writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Flags::Lt => "<",
            Flags::Le => "<=",
            Flags::Eq => "=",
            Flags::Ge => ">=",
            Flags::Gt => ">",
        }
    }
}

/// A version range: unversioned (`None`), or a comparison with an EVR.
pub type Range = Option<(Flags, Evr)>;

/// Whether two ranges share a version, as rpm's `rpmdsCompare` decides it: a provide satisfies a requirement
/// when their ranges overlap, and an unversioned side overlaps anything.
pub fn overlap(a: &Range, b: &Range) -> bool {
    let (Some((fa, ea)), Some((fb, eb))) = (a, b) else {
        return true;
    };
    match ea.compare(eb) {
        Ordering::Less => fa.greater() || fb.less(),
        Ordering::Greater => fa.less() || fb.greater(),
        Ordering::Equal => {
            (fa.equal() && fb.equal()) || (fa.less() && fb.less()) || (fa.greater() && fb.greater())
        }
    }
}

/// A range as written: ` >= 1.2-3`, or nothing.
pub fn range_text(r: &Range) -> String {
    match r {
        Some((f, e)) => format!(" {} {e}", f.as_str()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vercmp_orders_as_rpm_documents() {
        use Ordering::*;
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0a", Less),
            ("5.5p1", "5.5p10", Less),
            ("10", "9", Greater),
            ("010", "10", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^git1", "1.0~rc", Greater),
            ("a", "1", Less),
            ("1_0", "1.0", Equal),
            ("fc4", "fc.4", Equal),
        ] {
            assert_eq!(vercmp(a, b), want, "{a} vs {b}");
            assert_eq!(vercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn evr_parses_and_compares() {
        let e = Evr::parse("2:1.3-4.el9").unwrap();
        assert_eq!((e.epoch, e.version.as_str()), (2, "1.3"));
        assert_eq!(e.release.as_deref(), Some("4.el9"));
        assert_eq!(e.to_string(), "2:1.3-4.el9");
        assert!(Evr::parse("x:1").is_err());
        assert!(Evr::parse("1-").is_err());
        let v = |s| Evr::parse(s).unwrap();
        assert_eq!(v("1.2").compare(&v("1.2-7")), Ordering::Equal);
        assert_eq!(v("1:1.0").compare(&v("2.0")), Ordering::Greater);
        assert_eq!(v("1.0-2").compare(&v("1.0-10")), Ordering::Less);
    }

    #[test]
    fn ranges_overlap_as_rpm_decides() {
        let r = |f, s| Some((f, Evr::parse(s).unwrap()));
        use Flags::*;
        // A package providing libfoo = 1.3-1 against requirements.
        let have = r(Eq, "1.3-1");
        assert!(overlap(&have, &r(Ge, "1.2")));
        assert!(overlap(&have, &r(Lt, "2.0")));
        assert!(!overlap(&have, &r(Lt, "1.3")));
        assert!(overlap(&have, &r(Le, "1.3")));
        assert!(overlap(&have, &r(Eq, "1.3")), "no release: any release");
        assert!(!overlap(&have, &r(Eq, "1.3-2")));
        assert!(!overlap(&have, &r(Gt, "1.3-1")));
        assert!(overlap(&have, &None));
        assert!(overlap(&None, &r(Ge, "9")));
        // Two open ranges.
        assert!(overlap(&r(Ge, "1"), &r(Lt, "2")));
        assert!(!overlap(&r(Gt, "2"), &r(Lt, "2")));
        assert!(overlap(&r(Ge, "2"), &r(Le, "2")));
    }

    /// rpm's own `rpm.vercmp`, when rpm is on the machine.
    #[test]
    fn agrees_with_rpm_on_random_versions() {
        let parts = [
            "0", "1", "10", "2", "a", "b", "~", "^", ".", "~rc", "_", "p", "01",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut pairs = Vec::new();
        for _ in 0..300 {
            let mut v = || {
                let mut v = String::from("1");
                for _ in 0..(next() % 5) {
                    v.push_str(parts[(next() % parts.len() as u64) as usize]);
                }
                v
            };
            pairs.push((v(), v()));
        }
        let lua: String = pairs
            .iter()
            .map(|(a, b)| format!("print(rpm.vercmp('{a}', '{b}') .. ' ')\n"))
            .collect();
        let out = match std::process::Command::new("rpm")
            .arg("--eval")
            .arg(format!("%{{lua:\n{lua}}}"))
            .output()
        {
            Ok(o) if o.status.success() => o,
            _ => {
                eprintln!("no rpm here; skipped");
                return;
            }
        };
        let lines: Vec<i32> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(lines.len(), pairs.len());
        for ((a, b), rpm) in pairs.iter().zip(lines) {
            assert_eq!(vercmp(a, b), rpm.cmp(&0), "{a:?} vs {b:?}");
        }
    }
}
