//! Debian control files: a suite's `Release` (or the text inside a clearsigned `InRelease`), and a streaming
//! paragraph parser for `Packages` and `Sources` indexes of any size.

use ferry_protocol::Sha256Digest;
use std::collections::BTreeMap;
use std::io::Write;

/// One file a `Release` lists under `SHA256:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Path relative to the suite directory (`main/binary-amd64/Packages.xz`).
    pub path: String,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
    /// Its size.
    pub size: u64,
}

/// What ferry reads from a suite's `Release`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Release {
    /// `Suite:`.
    pub suite: Option<String>,
    /// `Codename:`.
    pub codename: Option<String>,
    /// `Components:`.
    pub components: Vec<String>,
    /// `Architectures:`.
    pub architectures: Vec<String>,
    /// `Acquire-By-Hash: yes`: clients fetch indexes from `by-hash/SHA256/<hex>`.
    pub acquire_by_hash: bool,
    /// The `SHA256:` list.
    pub sha256: Vec<Listed>,
    /// Every listed hash of every file, by path: `(list name, hex)` such as `("SHA512", "…")` — the names
    /// of its `by-hash/<list>/<hex>` copies, which apt asks for by the strongest list.
    pub by_hash: BTreeMap<String, Vec<(&'static str, String)>>,
}

/// The hash lists a Release may have; their names are also the `by-hash/` directory names.
const HASH_LISTS: [&str; 4] = ["MD5Sum", "SHA1", "SHA256", "SHA512"];

/// The signed text of a clearsigned message (`InRelease`), dash-escaping undone; other text as it is.
pub fn signed_text(text: &str) -> Result<String, String> {
    let Some(rest) = text
        .trim_start()
        .strip_prefix("-----BEGIN PGP SIGNED MESSAGE-----")
    else {
        return Ok(text.to_string());
    };
    let mut lines = rest.lines();
    // Armor headers (`Hash: SHA512`) up to the first empty line.
    lines.next();
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
    }
    let mut out = String::new();
    for l in lines {
        if l.starts_with("-----BEGIN PGP SIGNATURE-----") {
            return Ok(out);
        }
        out.push_str(l.strip_prefix("- ").unwrap_or(l));
        out.push('\n');
    }
    Err("clearsigned message without a signature block".into())
}

/// The fields of one paragraph: (name, value), the value's continuation lines joined with `\n`.
pub type Paragraph = Vec<(String, String)>;

/// The value of field `name` (case-insensitive, as in deb822).
pub fn field<'a>(p: &'a Paragraph, name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn words(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Parse a `Release` (already out of its signature).
pub fn parse_release(text: &str) -> Result<Release, String> {
    let mut first: Option<Paragraph> = None;
    let mut parser = Paragraphs::new(|p: Paragraph| {
        if first.is_none() {
            first = Some(p);
        }
        Ok(())
    });
    parser
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    parser.finish()?;
    let p = first.ok_or("no fields")?;
    let mut sha256 = Vec::new();
    for line in field(&p, "SHA256")
        .ok_or("no SHA256 file list")?
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let bad = || format!("bad SHA256 line {:?}", line.trim());
        let mut w = line.split_whitespace();
        let (Some(hex), Some(size), Some(path), None) = (w.next(), w.next(), w.next(), w.next())
        else {
            return Err(bad());
        };
        sha256.push(Listed {
            path: path.to_string(),
            sha256: format!("sha256:{hex}").parse().map_err(|_| bad())?,
            size: size.parse().map_err(|_| bad())?,
        });
    }
    let mut by_hash: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
    for list in HASH_LISTS {
        for line in field(&p, list).unwrap_or_default().lines() {
            if let [hex, _, path] = line.split_whitespace().collect::<Vec<_>>()[..] {
                if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    by_hash
                        .entry(path.to_string())
                        .or_default()
                        .push((list, hex.to_ascii_lowercase()));
                }
            }
        }
    }
    Ok(Release {
        suite: field(&p, "Suite").map(str::to_string),
        codename: field(&p, "Codename").map(str::to_string),
        components: words(field(&p, "Components")),
        architectures: words(field(&p, "Architectures")),
        acquire_by_hash: field(&p, "Acquire-By-Hash")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        sha256,
        by_hash,
    })
}

/// A `Write` sink that cuts deb822 text into paragraphs and hands each to a callback as it completes, so an
/// index is parsed while it is decompressed, never held whole. A callback error stops the parse.
pub struct Paragraphs<F: FnMut(Paragraph) -> Result<(), String>> {
    line: Vec<u8>,
    current: Paragraph,
    on_paragraph: F,
    error: Option<String>,
    line_no: u64,
    /// Bytes in the paragraph being read.
    size: usize,
}

/// Longest line accepted (a `Description` line is far shorter; this bounds memory on garbage).
const MAX_LINE: usize = 1 << 20;
/// Largest paragraph accepted (a Release's file list of a few thousand lines fits many times over).
const MAX_PARAGRAPH: usize = 64 << 20;

impl<F: FnMut(Paragraph) -> Result<(), String>> Paragraphs<F> {
    /// A parser calling `on_paragraph` for each paragraph.
    pub fn new(on_paragraph: F) -> Self {
        Paragraphs {
            line: Vec::new(),
            current: Vec::new(),
            on_paragraph,
            error: None,
            line_no: 0,
            size: 0,
        }
    }

    fn take_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.line_no += 1;
        let line =
            std::str::from_utf8(line).map_err(|_| format!("line {} is not UTF-8", self.line_no))?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return self.end_paragraph();
        }
        if line.starts_with('#') {
            return Ok(());
        }
        self.size += line.len();
        if self.size > MAX_PARAGRAPH {
            return Err(format!(
                "line {}: paragraph longer than {MAX_PARAGRAPH} bytes",
                self.line_no
            ));
        }
        if line.starts_with([' ', '\t']) {
            let (_, v) = self
                .current
                .last_mut()
                .ok_or_else(|| format!("line {}: continuation without a field", self.line_no))?;
            if !v.is_empty() {
                v.push('\n');
            }
            v.push_str(line.trim());
            return Ok(());
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: not a 'Field: value' line", self.line_no))?;
        self.current
            .push((k.trim().to_string(), v.trim().to_string()));
        Ok(())
    }

    fn end_paragraph(&mut self) -> Result<(), String> {
        self.size = 0;
        if self.current.is_empty() {
            return Ok(());
        }
        (self.on_paragraph)(std::mem::take(&mut self.current))
    }

    /// End of input: the last line and paragraph. The first error met, if any.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take_line(&line)?;
        }
        self.end_paragraph()
    }
}

impl<F: FnMut(Paragraph) -> Result<(), String>> Write for Paragraphs<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.error {
            return Err(std::io::Error::other(e.clone()));
        }
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let result = if self.line.is_empty() {
                self.take_line(&rest[..i])
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..i]);
                self.take_line(&line)
            };
            if let Err(e) = result {
                self.error = Some(e.clone());
                return Err(std::io::Error::other(e));
            }
            rest = &rest[i + 1..];
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            let e = format!("line {} is longer than {MAX_LINE} bytes", self.line_no + 1);
            self.error = Some(e.clone());
            return Err(std::io::Error::other(e));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "Origin: Test\nSuite: stable\nCodename: ferry\nArchitectures: amd64 all\n\
Components: main contrib\nAcquire-By-Hash: yes\nSHA256:\n \
0000000000000000000000000000000000000000000000000000000000000000 12 main/binary-amd64/Packages\n \
1111111111111111111111111111111111111111111111111111111111111111 34 main/binary-amd64/Packages.gz\n";

    #[test]
    fn release_fields_and_file_list() {
        let r = parse_release(RELEASE).unwrap();
        assert_eq!(r.suite.as_deref(), Some("stable"));
        assert_eq!(r.codename.as_deref(), Some("ferry"));
        assert_eq!(r.components, ["main", "contrib"]);
        assert_eq!(r.architectures, ["amd64", "all"]);
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 2);
        assert_eq!(r.sha256[1].path, "main/binary-amd64/Packages.gz");
        assert_eq!(r.sha256[1].size, 34);
        assert_eq!(
            r.by_hash["main/binary-amd64/Packages"],
            [("SHA256", "0".repeat(64))]
        );
        assert!(parse_release("Suite: x\n").is_err());
        assert!(parse_release("SHA256:\n zz 1 a\n").is_err());
    }

    #[test]
    fn clearsigned_text_is_unwrapped() {
        let signed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{}- -Dashed: yes\n-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n",
            RELEASE
        );
        let text = signed_text(&signed).unwrap();
        assert!(text.starts_with("Origin: Test\n"));
        assert!(text.ends_with("\n-Dashed: yes\n"));
        assert_eq!(
            parse_release(&text).unwrap().codename.as_deref(),
            Some("ferry")
        );
        assert!(signed_text("-----BEGIN PGP SIGNED MESSAGE-----\nHash: x\n\nA: b\n").is_err());
        assert_eq!(signed_text("A: b\n").unwrap(), "A: b\n");
    }

    #[test]
    fn paragraphs_stream_across_writes() {
        let text =
            "Package: a\nFilename: pool/a.deb\nDescription: x\n more\n\nPackage: b\r\nSize: 3\n";
        let mut got = Vec::new();
        let mut p = Paragraphs::new(|para| {
            got.push(para);
            Ok(())
        });
        for b in text.as_bytes().chunks(3) {
            p.write_all(b).unwrap();
        }
        p.finish().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(field(&got[0], "filename"), Some("pool/a.deb"));
        assert_eq!(field(&got[0], "Description"), Some("x\nmore"));
        assert_eq!(field(&got[1], "Size"), Some("3"));
        let mut p = Paragraphs::new(|_| Ok(()));
        assert!(p.write_all(b"no colon here\n").is_err());
    }
}
