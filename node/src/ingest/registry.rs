//! Pulling images through the OCI Distribution API (`docker://HOST/REPO:TAG`).
//!
//! Anonymous access, HTTP Basic, and the bearer-token flow (`WWW-Authenticate: Bearer realm=…,service=…`).
//! HTTPS always, except for hosts the operator names as insecure.

use super::image::{self, media, BlobSource, Context};
use super::reference::Reference;
use super::IngestError;
use crate::store::WriteStats;
use ferry_protocol::{Entry, ImageEntry, Sha256Digest};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use std::io::Read;
use std::sync::Mutex;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) to reach over plain HTTP.
    pub insecure: Vec<String>,
    /// Username and password for Basic auth or for the token service.
    pub creds: Option<(String, String)>,
    /// A bearer token to send as is.
    pub token: Option<String>,
}

/// A client for one repository on one registry.
pub struct RegistryClient {
    http: Client,
    base: String,
    host: String,
    repository: String,
    opts: RegistryOptions,
    /// How to authenticate, once known.
    auth: Mutex<Option<Auth>>,
}

/// Credentials to send with each request.
#[derive(Clone, Debug)]
enum Auth {
    Basic(String, String),
    Bearer(String),
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(200).collect()
}

/// The parameters of a `WWW-Authenticate` challenge.
fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.push((k.trim().to_ascii_lowercase(), v.to_string()));
        rest = tail.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

impl RegistryClient {
    /// A client for `r`'s repository.
    pub fn new(r: &Reference, opts: &RegistryOptions) -> Result<Self, IngestError> {
        let insecure = opts.insecure.iter().any(|h| h == &r.registry);
        let host = if r.registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            r.registry.clone()
        };
        let scheme = if insecure { "http" } else { "https" };
        let http = super::http_client()?;
        Ok(RegistryClient {
            http,
            base: format!("{scheme}://{host}/v2/{}", r.repository),
            host,
            repository: r.repository.clone(),
            auth: Mutex::new(opts.token.clone().map(Auth::Bearer)),
            opts: opts.clone(),
        })
    }

    fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, IngestError> {
        let attempt = |auth: Option<Auth>| {
            let req = match auth {
                Some(Auth::Basic(u, p)) => build().basic_auth(u, Some(p)),
                Some(Auth::Bearer(t)) => build().bearer_auth(t),
                None => build(),
            };
            req.send().map_err(|e| {
                IngestError::Registry(format!(
                    "cannot reach registry {}: {}",
                    self.host,
                    one_line(&super::error_chain(&e))
                ))
            })
        };
        let current = self.auth.lock().expect("auth lock").clone();
        let resp = attempt(current.clone())?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if current.is_some() && self.opts.token.is_some() {
            return Err(IngestError::Auth(format!(
                "authentication failed at registry {}: the registry refused the given token",
                self.host
            )));
        }
        let auth = self.authorize(&challenge)?;
        *self.auth.lock().expect("auth lock") = Some(auth.clone());
        let resp = attempt(Some(auth))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(IngestError::Auth(format!(
                "authentication failed at registry {}: {}",
                self.host,
                if self.opts.creds.is_some() {
                    "the registry refused the given credentials"
                } else {
                    "the registry requires credentials (--creds USER:PASSWORD or --registry-token)"
                }
            )));
        }
        Ok(resp)
    }

    /// Answer a challenge: Basic with the credentials, or fetch a bearer token.
    fn authorize(&self, challenge: &str) -> Result<Auth, IngestError> {
        let (scheme, params) = parse_challenge(challenge);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match scheme.as_str() {
            "basic" => {
                let Some((u, p)) = &self.opts.creds else {
                    return Err(IngestError::Auth(format!(
                        "authentication required at registry {}: give --creds USER:PASSWORD",
                        self.host
                    )));
                };
                Ok(Auth::Basic(u.clone(), p.clone()))
            }
            "bearer" => {
                let realm = get("realm").ok_or_else(|| {
                    IngestError::Auth(format!(
                        "registry {} asked for a bearer token without naming a realm",
                        self.host
                    ))
                })?;
                let mut req = self.http.get(&realm).query(&[(
                    "scope",
                    get("scope").unwrap_or(format!("repository:{}:pull", self.repository)),
                )]);
                if let Some(service) = get("service") {
                    req = req.query(&[("service", service)]);
                }
                if let Some((u, p)) = &self.opts.creds {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req.send().map_err(|e| {
                    IngestError::Auth(format!(
                        "cannot reach token service {realm}: {}",
                        one_line(&e.to_string())
                    ))
                })?;
                if !resp.status().is_success() {
                    let hint = if self.opts.creds.is_none() {
                        " (give --creds USER:PASSWORD or --registry-token)"
                    } else {
                        ""
                    };
                    return Err(IngestError::Auth(format!(
                        "authentication failed at registry {}: token service {realm} answered {}{hint}",
                        self.host,
                        resp.status()
                    )));
                }
                let body: serde_json::Value = resp.json().map_err(|e| {
                    IngestError::Auth(format!("token service {realm} sent no token: {e}"))
                })?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| {
                        IngestError::Auth(format!("token service {realm} sent no token"))
                    })?;
                Ok(Auth::Bearer(token.to_string()))
            }
            _ => Err(IngestError::Auth(format!(
                "registry {} requires authentication of an unsupported kind: {}",
                self.host,
                one_line(challenge)
            ))),
        }
    }

    fn error_for(&self, what: &str, resp: Response) -> IngestError {
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?;
                Some(format!(
                    "{} {}",
                    e.get("code")?.as_str()?,
                    e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                ))
            })
            .unwrap_or_else(|| one_line(&body));
        if status == StatusCode::NOT_FOUND {
            IngestError::NotFound(format!(
                "{what} not found at registry {} ({detail})",
                self.host
            ))
        } else if status == StatusCode::FORBIDDEN {
            IngestError::Auth(format!(
                "registry {} denied access to {what} ({detail})",
                self.host
            ))
        } else {
            IngestError::Registry(format!(
                "registry {} answered {status} for {what}: {detail}",
                self.host
            ))
        }
    }

    /// Resolve a tag or digest to the top-level manifest's digest, size and media type.
    pub fn resolve(&self, r: &Reference) -> Result<(Sha256Digest, u64, String), IngestError> {
        let reference = r.reference_part();
        let what = format!("{}/{}:{reference}", self.host, self.repository)
            .replace(":sha256:", "@sha256:");
        let url = format!("{}/manifests/{reference}", self.base);
        let accept = media::MANIFESTS.join(", ");
        let resp = self.send(|| self.http.get(&url).header(reqwest::header::ACCEPT, &accept))?;
        if !resp.status().is_success() {
            return Err(self.error_for(&format!("manifest {what}"), resp));
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Sha256Digest>().ok());
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let mut body = Vec::new();
        resp.take(image::MAX_MANIFEST + 1)
            .read_to_end(&mut body)
            .map_err(|e| IngestError::Registry(format!("reading manifest {what}: {e}")))?;
        if body.len() as u64 > image::MAX_MANIFEST {
            return Err(IngestError::Malformed {
                what: format!("manifest {what}"),
                reason: "larger than 4 MiB".into(),
            });
        }
        let actual = Sha256Digest::of(&body);
        for promised in [r.digest, header_digest].into_iter().flatten() {
            if promised != actual {
                return Err(IngestError::Store(
                    crate::store::StoreError::DigestMismatch {
                        what: format!("manifest {what}"),
                        expected: promised,
                        actual,
                    },
                ));
            }
        }
        Ok((actual, body.len() as u64, content_type))
    }
}

impl BlobSource for RegistryClient {
    fn describe(&self) -> String {
        format!("registry {}/{}", self.host, self.repository)
    }

    fn open(
        &self,
        digest: &Sha256Digest,
        _size: u64,
    ) -> Result<Box<dyn Read + Send + '_>, IngestError> {
        // Manifests live under /manifests/, everything else under /blobs/; registries serve manifests from
        // /blobs/ too, but not all of them, so try the manifest path when the blob path says no.
        let url = format!("{}/blobs/{digest}", self.base);
        let resp = self.send(|| self.http.get(&url))?;
        if resp.status().is_success() {
            return Ok(Box::new(resp));
        }
        if resp.status() == StatusCode::NOT_FOUND {
            let url = format!("{}/manifests/{digest}", self.base);
            let accept = media::MANIFESTS.join(", ");
            let resp =
                self.send(|| self.http.get(&url).header(reqwest::header::ACCEPT, &accept))?;
            if resp.status().is_success() {
                return Ok(Box::new(resp));
            }
            return Err(self.error_for(&format!("blob {digest}"), resp));
        }
        Err(self.error_for(&format!("blob {digest}"), resp))
    }
}

/// Ingest the image `r` from its registry.
pub fn ingest(
    ctx: &Context<'_>,
    r: &Reference,
    opts: &RegistryOptions,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let client = RegistryClient::new(r, opts)?;
    let (digest, size, media_type) = client.resolve(r)?;
    let walked = image::walk(ctx, &client, &digest, size, &media_type, stats)?;
    let tag = match (&r.tag, &r.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => format!("sha256-{}", d.hex()),
        (None, None) => "latest".into(),
    };
    entries.push(Entry::Image(ImageEntry {
        registry: Some(r.registry.clone()),
        repository: r.repository.clone(),
        tag,
        digest,
        media_type: walked.media_type,
        blobs: walked.blobs,
    }));
    Ok(())
}
