//! A registry behind the Docker token flow: a small token service on 127.0.0.1 (a `TcpListener` thread that
//! checks HTTP Basic credentials and hands out RS256 JWTs signed by the `openssl` CLI with a throwaway key),
//! and a real `docker-registry serve` configured with `auth: token:` trusting that key's self-signed
//! certificate. Both are stopped on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cmd;
use crate::registry::Registry;

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                s.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else if pad {
                s.push('=');
            }
        }
    }
    s
}

/// Standard base64 with padding (RFC 4648 §4): HTTP Basic, JWS `x5c`.
pub fn base64_std(bytes: &[u8]) -> String {
    encode(bytes, STD, true)
}

/// base64url without padding (RFC 4648 §5, as JWS wants it).
pub fn base64_url(bytes: &[u8]) -> String {
    encode(bytes, URL, false)
}

/// `%XX` and `+` decoding of one query-string component.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// What the token service made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The right user and password.
    Good,
    /// An `Authorization` header with other credentials (the raw header value).
    Wrong(String),
    /// No `Authorization` header.
    Anonymous,
}

/// One request the token service answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The request line's target (`/token?…`).
    pub target: String,
    /// `User-Agent`, empty if none.
    pub user_agent: String,
    /// Who asked.
    pub caller: Caller,
    /// The decoded `service` parameter, if any.
    pub service: Option<String>,
    /// The decoded `scope` parameters.
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// Signing material and the rules for handing out tokens.
struct Issuer {
    dir: PathBuf,
    key: PathBuf,
    x5c: String,
    user: String,
    password: String,
    service: String,
    issuer: String,
    serial: AtomicU64,
}

impl Issuer {
    /// A JWT for `user` granting `access` (a JSON array of `{type, name, actions}`).
    fn mint(&self, user: &str, access: Value) -> String {
        let n = self.serial.fetch_add(1, Ordering::SeqCst);
        let t = now();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": t + 3600,
            "nbf": t - 300,
            "iat": t - 60,
            "jti": format!("ferry-test-{}-{n}", std::process::id()),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            base64_url(header.to_string().as_bytes()),
            base64_url(claims.to_string().as_bytes())
        );
        let file = self.dir.join(format!("jwt-{n}.txt"));
        fs::write(&file, &input).expect("write JWT signing input");
        let sig = cmd::run_ok(
            "openssl",
            [
                "dgst".as_ref(),
                "-sha256".as_ref(),
                "-binary".as_ref(),
                "-sign".as_ref(),
                self.key.as_os_str(),
                file.as_os_str(),
            ],
        )
        .stdout_bytes;
        let _ = fs::remove_file(&file);
        assert_eq!(sig.len(), 256, "an RSA-2048 signature is 256 bytes");
        format!("{input}.{}", base64_url(&sig))
    }

    /// The `access` claim for `scopes` (`repository:NAME:ACTION,…`): pull and push on repositories, nothing else.
    fn grant(scopes: &[String]) -> Value {
        let mut access = Vec::new();
        for scope in scopes {
            // `repository:NAME:ACTIONS`; NAME may hold a `:` only in the `repository(plugin):…` form, ignored.
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if kind != "repository" {
                continue;
            }
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| *a == "pull" || *a == "push")
                .collect();
            access.push(json!({"type": "repository", "name": name, "actions": actions}));
        }
        Value::Array(access)
    }

    fn caller(&self, authorization: Option<&str>) -> Caller {
        let Some(h) = authorization else {
            return Caller::Anonymous;
        };
        let expected = base64_std(format!("{}:{}", self.user, self.password).as_bytes());
        match h.trim().split_once(' ') {
            Some((scheme, cred))
                if scheme.eq_ignore_ascii_case("basic") && cred.trim() == expected =>
            {
                Caller::Good
            }
            _ => Caller::Wrong(h.to_string()),
        }
    }

    /// Status, body and the record of one request.
    fn answer(
        &self,
        target: &str,
        user_agent: &str,
        authorization: Option<&str>,
    ) -> (u16, String, TokenRequest) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut service = None;
        let mut scopes = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match percent_decode(k).as_str() {
                // Docker clients send one scope per parameter; some join several with spaces.
                "scope" => {
                    scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string))
                }
                "service" => service = Some(v),
                _ => {}
            }
        }
        let caller = self.caller(authorization);
        let (status, body) = if path != "/token" {
            (
                404,
                json!({"errors": [{"code": "NOT_FOUND", "message": "no such path"}]}).to_string(),
            )
        } else if caller != Caller::Good {
            (
                401,
                json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
                    .to_string(),
            )
        } else if service.as_deref() != Some(self.service.as_str()) {
            (
                400,
                json!({"errors": [{"code": "INVALID_REQUEST",
                    "message": format!("service must be {}", self.service)}]})
                .to_string(),
            )
        } else {
            let token = self.mint(&self.user, Self::grant(&scopes));
            (
                200,
                json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": 3600,
                    "issued_at": "1970-01-01T00:00:00Z",
                })
                .to_string(),
            )
        };
        let record = TokenRequest {
            target: target.to_string(),
            user_agent: user_agent.to_string(),
            caller,
            service,
            scopes,
            status,
        };
        (status, body, record)
    }
}

/// The token service: answers `GET /token?service=…&scope=…` on 127.0.0.1, one connection at a time.
pub struct TokenService {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `USER:PASSWORD` it accepts.
    pub creds: String,
    /// The `service` (the token audience) it expects.
    pub service: String,
    /// The token issuer.
    pub issuer_name: String,
    /// The PEM certificate the registry must trust.
    pub cert: PathBuf,
    issuer: Arc<Issuer>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<(String, String)>)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((request_line, headers))
}

fn serve_one(issuer: &Issuer, mut stream: TcpStream) -> Option<TokenRequest> {
    let (request_line, headers) = read_request(&mut stream)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (status, body, record) = if method == "GET" {
        issuer.answer(
            target,
            header("user-agent").unwrap_or(""),
            header("authorization"),
        )
    } else {
        let (_, body, mut record) = issuer.answer(target, header("user-agent").unwrap_or(""), None);
        record.status = 405;
        (405, body, record)
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        resp.push_str("WWW-Authenticate: Basic realm=\"ferry-test-token\"\r\n");
    }
    resp.push_str("\r\n");
    resp.push_str(&body);
    let _ = stream.write_all(resp.as_bytes());
    let _ = stream.flush();
    Some(record)
}

impl TokenService {
    /// Generates an RSA key and self-signed certificate with `openssl`, and starts answering on a free port.
    pub fn start(user: &str, password: &str, service: &str, issuer: &str) -> Self {
        let dir = crate::tempdir();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        cmd::run_ok(
            "openssl",
            [
                "req".as_ref(),
                "-x509".as_ref(),
                "-newkey".as_ref(),
                "rsa:2048".as_ref(),
                "-nodes".as_ref(),
                "-keyout".as_ref(),
                key.as_os_str(),
                "-out".as_ref(),
                cert.as_os_str(),
                "-days".as_ref(),
                "1".as_ref(),
                "-subj".as_ref(),
                "/CN=ferry-test-token".as_ref(),
            ],
        );
        let der = cmd::run_ok(
            "openssl",
            [
                "x509".as_ref(),
                "-in".as_ref(),
                cert.as_os_str(),
                "-outform".as_ref(),
                "DER".as_ref(),
            ],
        )
        .stdout_bytes;
        assert!(
            der.len() > 300,
            "DER certificate looks too short: {} bytes",
            der.len()
        );
        let issuer = Arc::new(Issuer {
            dir: dir.path().to_path_buf(),
            key,
            x5c: base64_std(&der),
            user: user.to_string(),
            password: password.to_string(),
            service: service.to_string(),
            issuer: issuer.to_string(),
            serial: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token service");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (issuer, requests, stop) = (issuer.clone(), requests.clone(), stop.clone());
            thread::Builder::new()
                .name("token-service".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        if let Some(record) = serve_one(&issuer, stream) {
                            requests.lock().unwrap().push(record);
                        }
                    }
                })
                .expect("spawn the token service thread")
        };
        Self {
            port,
            creds: format!("{user}:{password}"),
            service: service.to_string(),
            issuer_name: issuer.issuer.clone(),
            cert,
            issuer,
            requests,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// A valid token for the right user granting `actions` on `repository`, as the service would hand out.
    pub fn mint(&self, repository: &str, actions: &[&str]) -> String {
        self.issuer.mint(
            &self.issuer.user,
            json!([{"type": "repository", "name": repository, "actions": actions}]),
        )
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TokenService {
    /// A real docker-registry whose `auth: token:` trusts this service; skopeo calls on it use its creds.
    pub fn registry(&self) -> Registry {
        let auth_cfg = format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            self.realm(),
            self.service,
            self.issuer_name,
            self.cert.display()
        );
        Registry::start_with_config(crate::tempdir(), &auth_cfg, Some(self.creds.clone()))
    }
}
