//! A real registry (`docker-registry serve`, CNCF distribution) on 127.0.0.1 with a free port picked at run
//! time, storage in a temporary directory; killed on drop. Images are pushed into it with `skopeo copy`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{self, ChildGuard, Output};
use crate::fsutil::sha256_hex;

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// The HTTP status of `GET /v2/` on `127.0.0.1:port`, if it answers.
fn v2_status(port: u16) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A running registry.
pub struct Registry {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// `USER:PASSWORD` when started with htpasswd auth.
    pub creds: Option<String>,
    guard: ChildGuard,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// A registry requiring HTTP basic auth (htpasswd, bcrypt) for `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Self {
        let dir = crate::tempdir();
        let mut auth_cfg = String::new();
        if let Some((user, password)) = auth {
            let out = cmd::run_ok("htpasswd", ["-Bbn", user, password]);
            fs::write(
                dir.path().join("htpasswd"),
                out.stdout.trim_end().to_string() + "\n",
            )
            .unwrap();
            auth_cfg = format!(
                "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        Self::start_with_config(dir, &auth_cfg, auth.map(|(u, p)| format!("{u}:{p}")))
    }

    /// A registry with `auth_cfg` as its `auth:` section (empty for none), data in `dir`; skopeo calls use
    /// `creds`. With auth, `GET /v2/` must answer 401.
    pub fn start_with_config(
        dir: tempfile::TempDir,
        auth_cfg: &str,
        creds: Option<String>,
    ) -> Self {
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let cfg = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_cfg}",
                dir.path().join("data").display()
            );
            let cfg_path = dir.path().join("config.yml");
            fs::write(&cfg_path, cfg).unwrap();
            let log_path = dir.path().join(format!("registry-{port}.log"));
            let log = fs::File::create(&log_path).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry (apt-get install docker-registry)");
            let mut guard = ChildGuard::new(child, &format!("docker-registry on port {port}"));
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) && guard.running() {
                if let Some(status) = v2_status(port) {
                    let expected = if auth_cfg.is_empty() { 200 } else { 401 };
                    assert_eq!(status, expected, "GET /v2/ on the test registry");
                    return Self {
                        port,
                        host: format!("127.0.0.1:{port}"),
                        creds,
                        guard,
                        dir,
                    };
                }
                thread::sleep(Duration::from_millis(50));
            }
            guard.kill();
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not come up; last log:\n{last_log}");
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG` for `repo_tag` = `REPO:TAG` (or `REPO@sha256:…`).
    pub fn url(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host)
    }

    fn creds_args(&self, flag: &str) -> Vec<String> {
        match &self.creds {
            Some(c) => vec![flag.to_string(), c.clone()],
            None => vec![],
        }
    }

    /// `skopeo copy [--all] oci:LAYOUT:TAG docker://HOST/REPO_TAG`.
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str, all: bool) -> Output {
        let mut args = vec![
            "copy".to_string(),
            "--quiet".into(),
            "--dest-tls-verify=false".into(),
        ];
        if all {
            args.push("--all".into());
        }
        args.extend(self.creds_args("--dest-creds"));
        args.push(format!("oci:{}:{tag}", layout.display()));
        args.push(self.url(repo_tag));
        cmd::run_ok("skopeo", args)
    }

    /// The manifest bytes the registry serves for `repo_tag` (`skopeo inspect --raw`).
    pub fn raw_manifest(&self, repo_tag: &str) -> Vec<u8> {
        let mut args = vec![
            "inspect".to_string(),
            "--raw".into(),
            "--tls-verify=false".into(),
        ];
        args.extend(self.creds_args("--creds"));
        args.push(self.url(repo_tag));
        cmd::run_ok("skopeo", args).stdout_bytes
    }

    /// The digest skopeo reports for `repo_tag` (`skopeo inspect` `.Digest`), checked against the raw bytes.
    pub fn digest(&self, repo_tag: &str) -> String {
        let mut args = vec!["inspect".to_string(), "--tls-verify=false".into()];
        args.extend(self.creds_args("--creds"));
        args.push(self.url(repo_tag));
        let out = cmd::run_ok("skopeo", args);
        let digest = out.json()["Digest"]
            .as_str()
            .expect("skopeo inspect .Digest")
            .to_string();
        let raw = self.raw_manifest(repo_tag);
        assert_eq!(
            digest,
            format!("sha256:{}", sha256_hex(&raw)),
            "registry digest vs raw manifest"
        );
        digest
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        let mut s = String::new();
        for e in fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
        {
            if e.file_name().to_string_lossy().starts_with("registry-") {
                s.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }

    /// The pid of the registry process.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }
}
