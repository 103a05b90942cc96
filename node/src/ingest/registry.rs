//! Pulling images through the OCI Distribution API (`docker://HOST/REPO:TAG`).
//!
//! Anonymous access, HTTP Basic, and the bearer-token flow (`WWW-Authenticate: Bearer realm=…,service=…`).
//! HTTPS always, except for hosts the operator names as insecure.

use super::attached;
use super::image::{self, media, BlobSource, Context};
use super::reference::Reference;
use super::IngestError;
use crate::store::WriteStats;
use crate::verify::{Policy, Rule, Verified};
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
        let m = self.fetch_manifest(&r.reference_part(), r.digest)?;
        Ok((m.digest, m.bytes.len() as u64, m.media_type))
    }

    /// The manifest tagged `tag`, if the repository has that tag.
    pub fn manifest_if_tagged(&self, tag: &str) -> Result<Option<Fetched>, IngestError> {
        match self.fetch_manifest(tag, None) {
            Ok(m) => Ok(Some(m)),
            Err(IngestError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `registry HOST/REPO:REFERENCE` (or `@sha256:…`), for messages.
    fn name_of(&self, reference: &str) -> String {
        format!("{}/{}:{reference}", self.host, self.repository).replace(":sha256:", "@sha256:")
    }

    /// The manifest or index at `reference` (a tag or a digest), checked against `promised` and the registry's
    /// `Docker-Content-Digest`.
    pub fn fetch_manifest(
        &self,
        reference: &str,
        promised: Option<Sha256Digest>,
    ) -> Result<Fetched, IngestError> {
        let what = self.name_of(reference);
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
        for promised in [promised, header_digest].into_iter().flatten() {
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
        Ok(Fetched {
            digest: actual,
            bytes: body,
            media_type: content_type,
        })
    }

    /// The manifests whose `subject` is `digest`, as the registry lists them: its referrers API, else the
    /// tag-schema fallback (an index tagged `sha256-<hex>`); none when it has neither.
    pub fn referrers(&self, digest: &Sha256Digest) -> Result<Vec<image::Descriptor>, IngestError> {
        let url = format!("{}/referrers/{digest}", self.base);
        let what = format!("the referrers of {}", self.name_of(&digest.to_string()));
        let resp = self.send(|| {
            self.http
                .get(&url)
                .header(reqwest::header::ACCEPT, media::OCI_INDEX)
        })?;
        let body = match resp.status() {
            s if s.is_success() => {
                let mut body = Vec::new();
                resp.take(image::MAX_MANIFEST + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| IngestError::Registry(format!("reading {what}: {e}")))?;
                body
            }
            // No referrers API (distribution 2.x answers 404 "page not found"): the fallback tag, if any.
            StatusCode::NOT_FOUND
            | StatusCode::BAD_REQUEST
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_ACCEPTABLE => {
                match self.manifest_if_tagged(&format!("sha256-{}", digest.hex()))? {
                    Some(m) if m.bytes.len() as u64 <= image::MAX_MANIFEST => m.bytes,
                    _ => return Ok(Vec::new()),
                }
            }
            _ => return Err(self.error_for(&what, resp)),
        };
        if body.len() as u64 > image::MAX_MANIFEST {
            return Err(IngestError::Malformed {
                what,
                reason: "larger than 4 MiB".into(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<image::Descriptor>,
        }
        let index: Index = serde_json::from_slice(&body).map_err(|e| IngestError::Malformed {
            what: what.clone(),
            reason: format!("not an image index: {e}"),
        })?;
        if index.manifests.len() > MAX_REFERRERS {
            return Err(IngestError::Malformed {
                what,
                reason: format!(
                    "{} referrers, more than the {MAX_REFERRERS} ferry carries",
                    index.manifests.len()
                ),
            });
        }
        Ok(index.manifests)
    }
}

/// The most referrers of one manifest carried.
const MAX_REFERRERS: usize = 1024;
/// The most referrers carried for one image in all (its manifests', and theirs, at every depth): what an
/// upstream registry can make one ingest fetch stays bounded.
const MAX_REFERRERS_PER_IMAGE: usize = 4096;

/// A manifest fetched by tag or digest.
pub struct Fetched {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The `Content-Type` the registry gave.
    pub media_type: String,
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

impl attached::Attachments for RegistryClient {
    fn tagged(&self, tag: &str) -> Result<Option<Vec<u8>>, IngestError> {
        Ok(self.manifest_if_tagged(tag)?.map(|m| m.bytes))
    }

    fn referrers_of(&self, digest: &Sha256Digest) -> Result<Vec<image::Descriptor>, IngestError> {
        self.referrers(digest)
    }

    fn manifest(&self, digest: &Sha256Digest) -> Result<Vec<u8>, IngestError> {
        Ok(self
            .fetch_manifest(&digest.to_string(), Some(*digest))?
            .bytes)
    }
}

/// Ingest the image `r` from its registry, with what is attached to it. With `verify`, a cosign signature of
/// its top-level digest by one of the rule's keys must be there first, before anything else is fetched.
pub fn ingest(
    ctx: &Context<'_>,
    r: &Reference,
    opts: &RegistryOptions,
    verify: Option<(&Policy, &Rule)>,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
    verified: &mut Vec<Verified>,
) -> Result<(), IngestError> {
    let client = RegistryClient::new(r, opts)?;
    let (digest, size, media_type) = client.resolve(r)?;
    if let Some((policy, rule)) = verify {
        let artifact = format!("image {r} ({digest})");
        let found = attached::find_signatures(&client, &digest)?;
        let (scheme, key) = attached::verify_image(rule, &digest, &found)
            .map_err(|reason| policy.refused(&artifact, reason))?;
        verified.push(Verified {
            artifact,
            scheme: scheme.into(),
            key,
        });
    }
    let walked = image::walk(ctx, &client, &digest, size, &media_type, stats)?;
    let tag = match (&r.tag, &r.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => format!("sha256-{}", d.hex()),
        (None, None) => "latest".into(),
    };
    let mut top = ImageEntry {
        registry: Some(r.registry.clone()),
        repository: r.repository.clone(),
        tag,
        digest,
        media_type: walked.media_type,
        blobs: walked.blobs,
    };
    let tagged = attachments(ctx, &client, r, &mut top, stats)?;
    entries.push(Entry::Image(top));
    for t in tagged {
        // Two tags of one image share its attachments: carry each once.
        if !entries
            .iter()
            .any(|e| matches!(e, Entry::Image(i) if i.reference() == t.reference()))
        {
            entries.push(Entry::Image(t));
        }
    }
    Ok(())
}

/// How deep referrers of referrers are followed (a signature of an SBOM of an image is two).
const REFERRER_DEPTH: usize = 3;

/// Bring what is attached to each manifest of `top` (the index and, per platform, each manifest): its OCI
/// referrers — signatures, SBOMs, attestations, and theirs — into `top`'s blobs, where the site's registry
/// serves them by digest and lists them in its referrers API; and cosign's `sha256-<hex>.sig`, `.att` and
/// `.sbom` tags, returned as images of their own under those tags. A referrer whose `subject` is not the
/// manifest it was listed for is refused, which also rules out loops.
fn attachments(
    ctx: &Context<'_>,
    client: &RegistryClient,
    r: &Reference,
    top: &mut ImageEntry,
    stats: &mut WriteStats,
) -> Result<Vec<ImageEntry>, IngestError> {
    let mut tagged = Vec::new();
    let mut seen: std::collections::HashSet<Sha256Digest> =
        top.blobs.iter().map(|b| b.blob.sha256).collect();
    let mut queue: Vec<(Sha256Digest, usize)> = top
        .blobs
        .iter()
        .filter(|b| media::MANIFESTS.contains(&b.media_type.as_str()))
        .map(|b| (b.blob.sha256, 0))
        .collect();
    let mut taken = 0;
    while let Some((subject, depth)) = queue.pop() {
        for suffix in [".sig", ".att", ".sbom"] {
            let tag = format!("sha256-{}{suffix}", subject.hex());
            let Some(m) = client.manifest_if_tagged(&tag)? else {
                continue;
            };
            let size = m.bytes.len() as u64;
            let walked = image::walk(ctx, client, &m.digest, size, &m.media_type, stats)?;
            tagged.push(ImageEntry {
                registry: Some(r.registry.clone()),
                repository: r.repository.clone(),
                tag,
                digest: m.digest,
                media_type: walked.media_type,
                blobs: walked.blobs,
            });
        }
        if depth >= REFERRER_DEPTH {
            continue;
        }
        for d in client.referrers(&subject)? {
            let within = format!(
                "referrer {} of {subject} at {}",
                d.digest,
                client.describe()
            );
            let digest = d.sha256(&within)?;
            if !seen.insert(digest) {
                continue;
            }
            taken += 1;
            if taken > MAX_REFERRERS_PER_IMAGE {
                return Err(IngestError::Malformed {
                    what: within,
                    reason: format!(
                        "more than {MAX_REFERRERS_PER_IMAGE} referrers in all for image {r}: refused, not carried in part"
                    ),
                });
            }
            // Its subject is checked before anything it names is fetched.
            let bytes = client
                .fetch_manifest(&digest.to_string(), Some(digest))?
                .bytes;
            let named = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["subject"]["digest"].as_str().map(str::to_string));
            if named.as_deref() != Some(subject.to_string().as_str()) {
                return Err(IngestError::Malformed {
                    what: within,
                    reason: format!(
                        "its subject is {}, not {subject}: the registry lists it for a manifest it does not refer to",
                        named.unwrap_or_else(|| "missing".into())
                    ),
                });
            }
            let walked = image::walk(ctx, client, &digest, d.size, &d.media_type, stats)?;
            for b in walked.blobs {
                seen.insert(b.blob.sha256);
                if !top.blobs.iter().any(|x| x.blob.sha256 == b.blob.sha256) {
                    top.blobs.push(b);
                }
            }
            queue.push((digest, depth + 1));
        }
    }
    Ok(tagged)
}
