//! HTTP byte ranges, shared by the registry and the repository mirrors: one `bytes=` range per request.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

/// A `Range` header that is malformed, asks for several ranges, or lies outside the content: a 416.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single `bytes=` range, resolved against `size` as inclusive `(first, last)`: `Ok(None)` for no Range
/// header.
pub fn parse_range(h: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(v) = h.get(header::RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| Unsatisfiable)?.trim();
    let spec = s.strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    if spec.contains(',') {
        return Err(Unsatisfiable);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (start, end) = if a.is_empty() {
        let n = number(b)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (
            size.saturating_sub(n),
            size.checked_sub(1).ok_or(Unsatisfiable)?,
        )
    } else {
        let start = number(a)?;
        let end = if b.is_empty() {
            size.checked_sub(1).ok_or(Unsatisfiable)?
        } else {
            number(b)?.min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || end < start {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

/// How to answer for `size` bytes: 200 with everything, 206 with `Content-Range: bytes FIRST-LAST/SIZE`, or 416
/// with `Content-Range: bytes */SIZE` (and no body).
#[derive(Debug)]
pub struct Answer {
    /// 200, 206 or 416.
    pub status: StatusCode,
    /// The first byte to send.
    pub start: u64,
    /// How many bytes to send.
    pub len: u64,
    /// The `Content-Range` header, for 206 and 416.
    pub content_range: Option<HeaderValue>,
}

impl Answer {
    /// The answer to a parsed range (`Ok(None)`: no range asked, or one to ignore).
    pub fn new(range: Result<Option<(u64, u64)>, Unsatisfiable>, size: u64) -> Answer {
        let (status, start, len, text) = match range {
            Ok(None) => (StatusCode::OK, 0, size, None),
            Ok(Some((s, e))) => (
                StatusCode::PARTIAL_CONTENT,
                s,
                e - s + 1,
                Some(format!("bytes {s}-{e}/{size}")),
            ),
            Err(Unsatisfiable) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                0,
                0,
                Some(format!("bytes */{size}")),
            ),
        };
        Answer {
            status,
            start,
            len,
            content_range: text.and_then(|t| HeaderValue::from_str(&t).ok()),
        }
    }
}

/// Decimal digits only (`u64::from_str` would also take a sign); more than fits in a u64 is `u64::MAX`, which
/// is past the end of any content: a first byte there is unsatisfiable, a last byte or a suffix that long means
/// to the end (RFC 9110, 14.1.2).
fn number(s: &str) -> Result<u64, Unsatisfiable> {
    digits(s).map_or(Err(Unsatisfiable), |n| Ok(n.unwrap_or(u64::MAX)))
}

/// A decimal number of digits only: `None` inside when it does not fit in a u64, `Err` when it is not one.
pub(crate) fn digits(s: &str) -> Result<Option<u64>, ()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn ranges() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(parse_range(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(parse_range(&h("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(&h("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(&h("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(&h("bytes=8-100"), 10), Ok(Some((8, 9))));
        // Numbers past any u64: a suffix or a last byte that far means all of it.
        assert_eq!(
            parse_range(&h("bytes=-99999999999999999999"), 10),
            Ok(Some((0, 9)))
        );
        assert_eq!(
            parse_range(&h("bytes=3-99999999999999999999"), 10),
            Ok(Some((3, 9)))
        );
        for bad in [
            "bytes=10-",
            "bytes=5-4",
            "bytes=-0",
            "bytes=-1-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=99999999999999999999-",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes= -3",
        ] {
            assert_eq!(parse_range(&h(bad), 10), Err(Unsatisfiable), "{bad}");
        }
        assert_eq!(parse_range(&h("bytes=0-"), 0), Err(Unsatisfiable));
    }
}
