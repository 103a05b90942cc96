//! `Content-Type` of a served file, from its name; and `Accept` negotiation for PEP 691 simple indexes.

/// The PEP 691 JSON form of a simple index.
pub const PYPI_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// The media type for a file called `name` (the last path segment).
pub fn content_type(name: &str) -> &'static str {
    match name {
        "InRelease" | "Release" | "Packages" | "Sources" | "Index" => {
            return "text/plain; charset=utf-8"
        }
        n if n.starts_with("Translation-") && !n.contains('.') => {
            return "text/plain; charset=utf-8"
        }
        _ => {}
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tar.gz") {
        return "application/gzip";
    }
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match ext {
        "deb" | "udeb" => "application/vnd.debian.binary-package",
        "dsc" | "txt" | "changes" => "text/plain; charset=utf-8",
        "gz" | "tgz" => "application/gzip",
        "xz" => "application/x-xz",
        "bz2" => "application/x-bzip2",
        "lzma" => "application/x-lzma",
        "zst" => "application/zstd",
        "json" => "application/json",
        "html" | "htm" => "text/html; charset=utf-8",
        "yaml" | "yml" => "application/yaml",
        "whl" | "zip" => "application/zip",
        "tar" => "application/x-tar",
        "rpm" => "application/x-rpm",
        "xml" => "application/xml",
        "asc" | "gpg" | "sig" => "application/pgp-signature",
        _ => "application/octet-stream",
    }
}

/// The quality the `Accept` header gives `media_type` (exact, `type/*` or `*/*`, most specific wins); 1 when
/// there is no header.
fn quality(accept: Option<&str>, media_type: &str) -> f32 {
    let Some(accept) = accept else {
        return 1.0;
    };
    let (major, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    let mut best: Option<(u8, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let specificity = if range == media_type {
            3
        } else if range == format!("{major}/*") {
            2
        } else if range == "*/*" {
            1
        } else {
            continue;
        };
        if !matches!(best, Some((s, _)) if s >= specificity) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// Whether a client asking with `accept` prefers the PEP 691 JSON form over HTML.
pub fn prefers_pypi_json(accept: Option<&str>) -> bool {
    let json = quality(accept, PYPI_JSON);
    let html =
        quality(accept, "application/vnd.pypi.simple.v1+html").max(quality(accept, "text/html"));
    accept.is_some() && json > 0.0 && json > html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_name() {
        assert_eq!(
            content_type("a+b~c_1_amd64.deb"),
            "application/vnd.debian.binary-package"
        );
        assert_eq!(content_type("InRelease"), "text/plain; charset=utf-8");
        assert_eq!(content_type("Packages.xz"), "application/x-xz");
        assert_eq!(content_type("x.tar.gz"), "application/gzip");
        assert_eq!(content_type("Release.gpg"), "application/pgp-signature");
        assert_eq!(content_type("index.yaml"), "application/yaml");
        assert_eq!(content_type("X.WHL"), "application/zip");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn pep_691_negotiation() {
        // pip's own header.
        let pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
        assert!(prefers_pypi_json(Some(pip)));
        assert!(!prefers_pypi_json(None));
        assert!(!prefers_pypi_json(Some("text/html")));
        assert!(!prefers_pypi_json(Some("*/*")));
        assert!(!prefers_pypi_json(Some(
            "application/vnd.pypi.simple.v1+json;q=0.5, text/html"
        )));
        assert!(prefers_pypi_json(Some(
            "application/vnd.pypi.simple.v1+json, */*;q=0.1"
        )));
    }
}
