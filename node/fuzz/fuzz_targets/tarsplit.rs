//! The tar cutter (`ferry_node::tarsplit`, `chunker::ContentCutter`): any bytes, fed to the splitter in pieces
//! of any size, split into a headers stream and a contents stream that join back to exactly those bytes; the
//! files it reports lie in order inside the contents stream; and the contents cutter, given them as ingest
//! gives them, cuts the contents into chunks that tile it, each at most `max` bytes.
//!
//! Input: a byte choosing the piece size, then the stream.
#![no_main]

use ferry_node::chunker::{ContentCutter, Cutter};
use ferry_node::config::Chunking;
use ferry_node::tarsplit::{join, File, Splitter, Streams};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

#[derive(Default)]
struct Split {
    headers: Vec<u8>,
    contents: Vec<u8>,
    files: Vec<File>,
}

impl Streams for Split {
    fn headers(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.headers.extend_from_slice(b);
        Ok(())
    }
    fn contents(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.contents.extend_from_slice(b);
        Ok(())
    }
    fn file(&mut self, f: File) -> std::io::Result<()> {
        assert_eq!(
            f.at,
            self.contents.len() as u64,
            "a file starts elsewhere than the contents' end"
        );
        self.files.push(f);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    let piece = [1, 7, 511, 512, 513, 4096][usize::from(piece) % 6];
    let mut s = Splitter::new();
    let mut out = Split::default();
    for p in data.chunks(piece) {
        s.push(p, &mut out).expect("collecting cannot fail");
    }
    s.finish(&mut out).expect("collecting cannot fail");
    let mut back = Vec::new();
    let n = join(&out.headers[..], &out.contents[..], &mut back).expect("a split joins");
    assert_eq!(n, back.len() as u64);
    assert!(back == data, "a split joins to other bytes");

    // The contents cut as ingest cuts them: files handed over before the bytes that hold them.
    let params = Chunking {
        min: 64,
        avg: 256,
        max: 1024,
        ..Chunking::default()
    };
    let queue = Rc::new(RefCell::new(VecDeque::new()));
    let mut cutter = ContentCutter::new(params, queue.clone());
    let c = &out.contents;
    let mut files = out.files.iter().copied().peekable();
    // Bytes not cut yet are given again with more, as ingest carries them into its next buffer.
    let (mut from, mut width) = (0, 2 * params.max as usize);
    loop {
        let end = (from + width).min(c.len());
        while let Some(f) = files.next_if(|f| f.at < end as u64) {
            queue.borrow_mut().push_back(f);
        }
        let at_end = end == c.len();
        let cuts = cutter.cut(&c[from..end], at_end);
        let mut pos = 0;
        for r in &cuts {
            assert!(
                r.start == pos && r.end > r.start,
                "cuts do not tile the contents"
            );
            assert!(r.len() <= params.max as usize, "a chunk longer than max");
            pos = r.end;
        }
        from += pos;
        width = if pos == 0 {
            2 * width
        } else {
            2 * params.max as usize
        };
        if at_end {
            assert_eq!(from, c.len(), "contents left uncut at the end");
            break;
        }
    }
});
