//! `Range` (pulls from the registry and the repository mirrors) and `Content-Range` (chunked uploads) headers:
//! any value is refused or read as a range inside the content, and the answer built from it (status, first
//! byte, length, `Content-Range`) stays inside it too.
//!
//! Input: 8 bytes of content size (u64 LE), then the header value; both headers are read from it.
#![no_main]

use ferry_node::mirror::range::Answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, value)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Mostly small sizes, so ranges fall inside and outside alike; the top bit keeps the full range.
    let size = u64::from_le_bytes(*size);
    let size = if size >> 63 == 0 {
        size % 100_000
    } else {
        size
    };
    if let Some(range) = ferry_node::fuzz::range(value, size) {
        if let Ok(Some((first, last))) = range {
            assert!(
                first <= last && last < size,
                "range {first}-{last} outside {size} bytes"
            );
        }
        let a = Answer::new(range, size);
        assert!(
            a.start.checked_add(a.len).is_some_and(|end| end <= size),
            "answer outside the content"
        );
        if a.status == 206 {
            let cr = a.content_range.expect("a 206 has a Content-Range");
            let want = format!("bytes {}-{}/{size}", a.start, a.start + a.len - 1);
            assert_eq!(cr.to_str().unwrap(), want);
        }
    }
    if let Some(Ok(Some((first, last)))) = ferry_node::fuzz::content_range(value) {
        assert!(
            first <= last && last < u64::MAX,
            "Content-Range {first}-{last}"
        );
    }
});
