//! rpms written by the real `rpmbuild` (rpm 4.18) from real files, read; damaged and hostile ones refused.

use super::*;

/// An rpm that `rpmbuild` writes of `files` (copied from this machine into `/opt/NAME/`), its payload
/// compressed as `payload` says (`_binary_payload`: `w19.zstdio`, `w2.xzdio`; empty for rpm's default, gzip).
pub(crate) fn rpmbuild(name: &str, payload: &str, files: &[&str]) -> Vec<u8> {
    let top = tempfile::tempdir().unwrap();
    let spec = top.path().join(format!("{name}.spec"));
    let copies: String = files
        .iter()
        .map(|f| format!("cp -r {f} %{{buildroot}}/opt/{name}/\n"))
        .collect();
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: real files\nLicense: GPL\n\
             %description\nReal files for Ferry's tests.\n\
             %install\nmkdir -p %{{buildroot}}/opt/{name}\n{copies}\
             %files\n/opt/{name}\n"
        ),
    )
    .unwrap();
    let mut c = std::process::Command::new("rpmbuild");
    c.arg("--quiet")
        .arg("--define")
        .arg(format!("_topdir {}", top.path().display()))
        // No stripping or byte-compiling of the copies, no debuginfo package.
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "debug_package %{nil}"]);
    if !payload.is_empty() {
        c.arg("--define").arg(format!("_binary_payload {payload}"));
    }
    let out = c.arg("-bb").arg(&spec).output().expect("rpmbuild");
    assert!(
        out.status.success(),
        "rpmbuild {payload}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpm = walk(&top.path().join("RPMS"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "rpm"))
        .expect("rpmbuild wrote an rpm");
    std::fs::read(rpm).unwrap()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn read_all(file: &[u8]) -> Result<Rpm, Refused> {
    read(file, file.len() as u64)
}

#[test]
fn rpmbuild_output_is_read_for_every_payload_compressor() {
    for (payload, compressor, magic) in [
        ("w19.zstdio", "zstd", &crate::zstd::MAGIC[..]),
        ("w2.xzdio", "xz", &crate::xz::MAGIC[..]),
        ("w9.bzdio", "bzip2", b"BZh9"),
        ("", "gzip", &[0x1f, 0x8b][..]),
    ] {
        let file = rpmbuild("doc", payload, &["/usr/share/doc/rpm"]);
        let r = read_all(&file).unwrap();
        assert_eq!(r.compressor.as_deref(), Some(compressor), "{payload}");
        assert_eq!(r.signature.at, LEAD);
        assert_eq!(r.header.at, r.signature.end().next_multiple_of(8));
        assert_eq!(r.payload_at + r.payload_len, file.len() as u64);
        assert!(
            file[r.payload_at as usize..].starts_with(magic),
            "{payload}"
        );
    }
}

#[test]
fn damaged_and_hostile_rpms_are_refused_with_where() {
    let file = rpmbuild("doc", "w3.zstdio", &["/usr/share/doc/rpm"]);
    let r = read_all(&file).unwrap();
    // Cut anywhere inside the lead or headers: refused; inside the payload: read (the payload's own reader
    // finds it short).
    for cut in [0, 4, 95, 96, 100, 112, r.signature.end() as usize - 1] {
        assert!(read_all(&file[..cut]).is_err(), "cut at {cut}");
    }
    for cut in [r.header.at as usize + 8, r.payload_at as usize - 1] {
        let e = read_all(&file[..cut]).unwrap_err().to_string();
        assert!(e.contains("main header"), "{e}");
    }
    assert!(read_all(&file[..r.payload_at as usize + 3]).is_ok());
    let damaged = |at: usize, bytes: &[u8]| {
        let mut f = file.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        read_all(&f).unwrap_err().to_string()
    };
    assert!(damaged(0, b"\xed\xab\xee\xdc").contains("at byte 0"));
    assert!(damaged(96, b"\x8e\xad\xe8\x02").contains("at byte 96"));
    // Entry counts and data sizes past rpm's limits, or past the end: refused before anything is read.
    let e = damaged(96 + 8, &[0, 1, 0, 0]);
    assert!(
        e.contains("at byte 104") && e.contains("65536 index entries"),
        "{e}"
    );
    let e = damaged(96 + 12, &[0x7f, 0xff, 0xff, 0xff]);
    assert!(e.contains("at byte 108") && e.contains("data"), "{e}");
    let e = damaged(96 + 12, &[0x0f, 0xff, 0xff, 0xff]);
    assert!(e.contains("past the file's end"), "{e}");
    let e = damaged(r.header.at as usize + 8, &[0, 0, 0, 0]);
    assert!(e.contains("main header has 0 index entries"), "{e}");
    // A compressor tag whose offset points outside the header's data.
    let tag = (0..r.header.entries as usize)
        .map(|i| r.header.at as usize + 16 + 16 * i)
        .find(|&at| file[at..at + 4] == TAG_PAYLOADCOMPRESSOR.to_be_bytes())
        .expect("a PAYLOADCOMPRESSOR tag");
    let e = damaged(tag + 8, &[0xff, 0, 0, 0]);
    assert!(e.contains(&format!("at byte {tag}")), "{e}");
    let e = damaged(tag + 4, &[0, 0, 0, 4]);
    assert!(e.contains("not a string"), "{e}");
    // Not an rpm at all, or a lead without a header structure after it.
    assert!(read_all(b"not an rpm").is_err());
    let mut lead = file[..96].to_vec();
    lead.extend_from_slice(&[0u8; 64]);
    assert!(read_all(&lead)
        .unwrap_err()
        .to_string()
        .contains("signature header magic"));
}
