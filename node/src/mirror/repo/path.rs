//! Request paths under `/repos/`: percent-decoded once, segment by segment, and refused when a segment could
//! climb, hide or split (`..`, `.`, empty, NUL, an encoded `/`); and the reverse, encoding paths for links.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// A request path after `/repos/`, decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestPath {
    /// The decoded segments (none for `/repos/`).
    pub segments: Vec<String>,
    /// Whether the raw path ended with `/` (a directory was asked for).
    pub slash: bool,
}

/// Why a path is refused (always a 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad path: {0}")]
pub struct BadPath(pub String);

/// Decode the raw (still percent-encoded) path after `/repos/`.
pub fn parse(raw: &str) -> Result<RequestPath, BadPath> {
    let slash = raw.is_empty() || raw.ends_with('/');
    let body = raw.strip_suffix('/').unwrap_or(raw);
    if body.is_empty() {
        return Ok(RequestPath {
            segments: vec![],
            slash,
        });
    }
    let mut segments = Vec::new();
    for seg in body.split('/') {
        let decoded = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| BadPath(format!("segment {seg:?} is not UTF-8 once decoded")))?;
        let why = match decoded.as_ref() {
            "" => Some("an empty segment (//)"),
            "." | ".." => Some("a '.' or '..' segment"),
            d if d.contains('/') => Some("an encoded '/' (%2F) inside a segment"),
            d if d.contains('\0') => Some("a NUL byte"),
            _ => None,
        };
        if let Some(why) = why {
            return Err(BadPath(format!("{why} in {seg:?}")));
        }
        segments.push(decoded.into_owned());
    }
    Ok(RequestPath { segments, slash })
}

/// Bytes left as they are in links: unreserved characters and a few safe ones apt and pip write themselves.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'+')
    .remove(b'@')
    .remove(b'=')
    .remove(b',');

/// One path segment, encoded for a URL.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A `/`-separated path, each segment encoded.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_and_refuses_escapes() {
        let p = parse("deb/1/pool/main/a%2Bb%7Ec.deb").unwrap();
        assert_eq!(p.segments, ["deb", "1", "pool", "main", "a+b~c.deb"]);
        assert!(!p.slash);
        // Decoded once: `%252F` is the literal name `%2F`, not a slash.
        assert_eq!(parse("a/%252F").unwrap().segments, ["a", "%2F"]);
        assert_eq!(
            parse("").unwrap(),
            RequestPath {
                segments: vec![],
                slash: true
            }
        );
        assert!(parse("a/b/").unwrap().slash);
        for bad in [
            "a/../b",
            "a/%2e%2e/b",
            "a/%2E%2E",
            "..",
            "a/./b",
            "a/%2e",
            "a//b",
            "a/b%2Fc",
            "a/b%2fc",
            "a/%00",
            "a/%ff",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_what_must_be() {
        assert_eq!(encode_segment("a+b~c 1%.deb"), "a+b~c%201%25.deb");
        assert_eq!(encode_path("x/<y>/z\"q"), "x/%3Cy%3E/z%22q");
    }
}
