//! Ferry's decomposers: a compressed stream, or a container of them, taken apart into its raw content and the
//! small data that re-creates the original byte for byte, and put back together from them.
//!
//! - [`xz`]: xz streams written by liblzma (presets 0-9, extreme, every check, single- and multi-threaded), the
//!   parameters found the way pristine-xz finds them: read from the stream's headers where they are recorded,
//!   tried against its first bytes where they are not;
//! - [`bzip2`]: bzip2 streams written by libbzip2, their level read from their header;
//! - [`zstd`]: zstd frames written by libzstd 1.5.4 (the zstd CLI, dpkg, rpm), the level found by trial;
//! - [`klauspost`]: zstd as Go's klauspost/compress writes it (image layers from containers/image and buildkit),
//!   re-created by a model of its encoder;
//! - [`deflate`]: gzip and zip members' deflate streams written by zlib, zlib-rs, GNU gzip, Go and pgzip (and
//!   the corrections that re-create any other deflate encoder's), the producer found by prediction;
//! - [`ar`]: `ar` archives (`.deb`), whose members are located so their compressed ones can be taken apart;
//! - [`rpm`]: `.rpm` packages, whose lead and headers are read to locate the compressed payload;
//! - [`packed`]: a file as a skeleton (everything kept as it is) and compressed members re-created into it.
//!
//! Nothing here knows the store: bytes in (a [`ReadAt`] source), raw content and re-creation data out, and back.
//! Every parser bounds what a hostile input can make it hold, and refuses with an error that names what is wrong
//! and where.

pub mod ar;
pub mod bzip2;
pub mod deflate;
pub mod klauspost;
pub mod packed;
pub mod rpm;
#[doc(hidden)]
pub mod testdata;
pub mod xz;
pub mod zstd;

use std::io::{self, Read};

/// A source read at offsets (a file, or bytes in memory).
pub trait ReadAt: Sync {
    /// Fill `buf` from `at`; an error if the source ends first.
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, at)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let start = usize::try_from(at)
            .ok()
            .filter(|&s| s <= self.len() && self.len() - s >= buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, at)
    }
}

/// The bytes `[at, at + len)` of a [`ReadAt`] source, as a reader.
pub struct Range<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    at: u64,
    end: u64,
}

impl<'a, R: ReadAt + ?Sized> Range<'a, R> {
    pub fn new(src: &'a R, at: u64, len: u64) -> Self {
        Range {
            src,
            at,
            end: at.saturating_add(len),
        }
    }
}

impl<R: ReadAt + ?Sized> Read for Range<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.at).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.src.read_exact_at(&mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Why a stream or container cannot be taken apart here: it is then kept as it is. `at` is the byte offset in
/// the input where the reason was found.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("at byte {at}: {why}")]
    Malformed { at: u64, why: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("reading the input: {0}")]
    Io(#[from] io::Error),
}

/// Run `pump` (compressing or decompressing into `buf`) over everything `src` yields, handing output to `out`;
/// the bytes written.
pub(crate) fn pump(
    mut src: impl Read,
    mut out: impl FnMut(&[u8]) -> io::Result<()>,
    mut pump: impl FnMut(&[u8], &mut [u8], bool) -> io::Result<(usize, usize, bool)>,
) -> io::Result<u64> {
    let mut inbuf = vec![0u8; 256 << 10];
    let mut outbuf = vec![0u8; 256 << 10];
    let (mut have, mut pos, mut eof, mut written) = (0usize, 0usize, false, 0u64);
    loop {
        if pos == have && !eof {
            have = loop {
                match src.read(&mut inbuf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            pos = 0;
            eof = have == 0;
        }
        let (used, made, done) = pump(&inbuf[pos..have], &mut outbuf, eof)?;
        pos += used;
        if made > 0 {
            out(&outbuf[..made])?;
            written += made as u64;
        }
        if done {
            return Ok(written);
        }
        if eof && used == 0 && made == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ends early",
            ));
        }
    }
}

pub(crate) fn malformed(at: u64, why: impl Into<String>) -> Refused {
    Refused::Malformed {
        at,
        why: why.into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::process::Command;
    use std::sync::Mutex;

    /// Real bytes of several kinds: this machine's binaries, libraries' text and a man page tree, `n` bytes.
    pub(crate) fn corpus(n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        for dir in [
            "/usr/bin",
            "/usr/share/perl5",
            "/usr/share/doc",
            "/usr/lib/x86_64-linux-gnu",
        ] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            paths.sort();
            // A quarter of the corpus from each directory, at most a sixteenth from one file.
            let until = if dir.starts_with("/usr/lib") {
                n
            } else {
                out.len() + n / 4
            };
            for p in paths.into_iter().filter(|p| p.is_file()) {
                if let Ok(b) = std::fs::read(&p) {
                    out.extend_from_slice(&b[..b.len().min(n / 16)]);
                }
                if out.len() >= until {
                    break;
                }
            }
        }
        out.truncate(n);
        assert_eq!(
            out.len(),
            n,
            "not enough files on this machine for the corpus"
        );
        out
    }

    /// `tools/fixtures/NAME/main.go` built with Debian's Go and its packaged Go libraries (`GOPATH`), once per
    /// test run: the real producers the Go models are checked against (`needs`: the Debian packages it takes).
    pub(crate) fn go_tool(name: &'static str, needs: &str) -> &'static Path {
        static TOOLS: Mutex<Vec<(&str, &'static Path)>> = Mutex::new(Vec::new());
        let mut tools = TOOLS.lock().unwrap();
        if let Some((_, path)) = tools.iter().find(|(n, _)| *n == name) {
            return path;
        }
        // Kept for the whole run: the directory is left behind in the temporary directory.
        let dir = tempfile::tempdir().unwrap().keep();
        let bin = dir.join(name);
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../tools/fixtures/{name}/main.go"));
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(&src)
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", dir.join("cache"))
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run go ({e}): install golang-go (see tools/ci-deps)")
            });
        assert!(
            status.success(),
            "building {} failed: install {needs} (see tools/ci-deps)",
            src.display()
        );
        let path: &'static Path = Box::leak(bin.into_boxed_path());
        tools.push((name, path));
        path
    }

    /// What the real tool `name` (xz, bzip2, zstd) writes on stdout given `args` and `input` on stdin.
    pub(crate) fn run_tool(name: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
        let args: Vec<&str> = args.iter().copied().chain(["-c"]).collect();
        crate::deflate::tests::run_tool(name, &args, input)
    }
}
