//! Who may push and pull: tokens, checked on every request.
//!
//! Push needs one of the push tokens; with none configured, push is refused outright. Pull is anonymous unless
//! pull tokens are configured; a push token also allows pulling. Pulling means everything that reveals content:
//! the registry (`/v2/`), the file trees (`/repos/`) and the lists of what is served (`/_ferry/`). The status page
//! (`/`) and metrics (`/metrics`) take their own tokens, when configured ([`Access::status`]), so a monitoring
//! system can read them without being able to pull. A token arrives as the password of HTTP Basic
//! (any user name: `skopeo copy --dest-creds ci:TOKEN`, `podman login -u ci -p TOKEN`) or as `Bearer TOKEN`.
//! Tokens are compared through their SHA-256, in constant time, every token every time.
//!
//! Clients of containers/image (skopeo, podman, buildah) learn how to authenticate only from the answer to
//! `GET /v2/`, and send credentials on later requests only if that answer carried a challenge. So when push is
//! enabled and pull is anonymous, an anonymous `GET /v2/` is answered 200 *with* `WWW-Authenticate: Basic`, and
//! credentials sent with a pull are ignored (a client without any sends an empty Basic header).

use super::oci::ApiError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The realm named in challenges.
pub const REALM: &str = "ferry";

/// The tokens a node accepts. Deserializable so a configuration file can carry it; never printed with its tokens.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// Tokens that allow pushing (and pulling). Empty: push is not enabled.
    #[serde(default)]
    pub push: Vec<String>,
    /// Tokens that allow pulling; `None`: pulls are anonymous.
    #[serde(default)]
    pub pull: Option<Vec<String>>,
    /// Tokens that allow reading the status page and metrics; `None`: anyone may.
    #[serde(default)]
    pub status: Option<Vec<String>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let optional = |tokens: &Option<Vec<String>>| match tokens {
            Some(t) => format!("{} token(s)", t.len()),
            None => "anonymous".into(),
        };
        f.debug_struct("Access")
            .field("push", &format_args!("{} token(s)", self.push.len()))
            .field("pull", &optional(&self.pull))
            .field("status", &optional(&self.status))
            .finish()
    }
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// Unreadable.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No token in it.
    #[error("token file {0} holds no token (one per line; '#' starts a comment)")]
    Empty(String),
}

/// Read a token file: one token per line, surrounding blanks trimmed; blank lines and lines starting with `#`
/// skipped. At least one token is required.
pub fn read_tokens(path: &Path) -> Result<Vec<String>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err(TokenFileError::Empty(path.display().to_string()));
    }
    Ok(tokens)
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// `GET /v2/`: the version check clients use to learn the authentication scheme (and `login` uses to test
    /// credentials).
    Ping,
    /// Reading.
    Pull,
    /// Writing.
    Push,
    /// The status page and metrics.
    Status,
}

/// What the credentials of a request turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nobody,
    Invalid,
    Puller,
    Pusher,
}

fn hash(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Whether `given` is one of `tokens`: every token compared, each through a fixed-size hash, without early exit.
fn matches(given: &[u8; 32], tokens: &[String]) -> bool {
    let mut found = 0u8;
    for t in tokens {
        let h = hash(t.as_bytes());
        let diff = h.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found |= u8::from(diff == 0);
    }
    found != 0
}

/// The token a request carries: the password of Basic, or a Bearer token. `Some(None)` for a header that is
/// present but not understood.
fn presented(headers: &HeaderMap) -> Option<Option<Vec<u8>>> {
    let v = headers.get(header::AUTHORIZATION)?;
    let Ok(v) = v.to_str() else {
        return Some(None);
    };
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    let rest = rest.trim();
    Some(if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|raw| {
                let i = raw.iter().position(|&b| b == b':')?;
                Some(raw[i + 1..].to_vec())
            })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(rest.as_bytes().to_vec())
    } else {
        None
    })
}

impl Access {
    /// Push tokens from `push` (push refused without), pull tokens from `pull` (anonymous pulls without), status
    /// tokens from `status` (an open status page without).
    pub fn from_files(
        push: Option<&Path>,
        pull: Option<&Path>,
        status: Option<&Path>,
    ) -> Result<Access, TokenFileError> {
        Ok(Access {
            push: push.map(read_tokens).transpose()?.unwrap_or_default(),
            pull: pull.map(read_tokens).transpose()?,
            status: status.map(read_tokens).transpose()?,
        })
    }

    /// Whether push is enabled at all.
    pub fn push_enabled(&self) -> bool {
        !self.push.is_empty()
    }

    fn who(&self, headers: &HeaderMap) -> Who {
        match presented(headers) {
            None => Who::Nobody,
            Some(None) => Who::Invalid,
            Some(Some(token)) if token.is_empty() => Who::Nobody,
            Some(Some(token)) => {
                let h = hash(&token);
                let push = matches(&h, &self.push);
                let pull = self.pull.as_deref().is_some_and(|p| matches(&h, p));
                if push {
                    Who::Pusher
                } else if pull {
                    Who::Puller
                } else {
                    Who::Invalid
                }
            }
        }
    }

    /// Allow the request, or the error to answer it with.
    pub(crate) fn check(&self, headers: &HeaderMap, need: Need) -> Result<(), ApiError> {
        if need == Need::Status {
            return self.check_status(headers);
        }
        let who = self.who(headers);
        let anonymous_pull = self.pull.is_none();
        match need {
            Need::Push => match who {
                _ if !self.push_enabled() => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    "push is not enabled on this node (start ferry serve with --push-token-file)",
                )),
                Who::Pusher => Ok(()),
                Who::Puller => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    "this token allows pulling, not pushing",
                )),
                Who::Nobody => Err(unauthorized(
                    "pushing to this node needs a push token (HTTP Basic with the token as password, or Bearer)",
                )),
                Who::Invalid => Err(unauthorized("the token is not a valid push token")),
            },
            Need::Pull => match who {
                Who::Pusher | Who::Puller => Ok(()),
                _ if anonymous_pull => Ok(()),
                Who::Nobody => Err(unauthorized(
                    "pulling from this node needs a token (HTTP Basic with the token as password, or Bearer)",
                )),
                Who::Invalid => Err(unauthorized("the token is not valid here")),
            },
            Need::Ping => match who {
                Who::Pusher | Who::Puller => Ok(()),
                Who::Nobody if anonymous_pull => Ok(()),
                Who::Nobody => Err(unauthorized("this node needs a token")),
                Who::Invalid => Err(unauthorized("the token is not valid here")),
            },
            Need::Status => unreachable!("answered above"),
        }
    }

    fn check_status(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(tokens) = &self.status else {
            return Ok(());
        };
        match presented(headers) {
            Some(Some(t)) if !t.is_empty() && matches(&hash(&t), tokens) => Ok(()),
            Some(Some(t)) if !t.is_empty() => {
                Err(unauthorized("the token is not a valid status token"))
            }
            _ => Err(unauthorized(
                "this node's status needs a status token (HTTP Basic with the token as password, or Bearer)",
            )),
        }
    }

    /// Headers for a successful `GET /v2/`: a Basic challenge whenever some access needs a token, so clients
    /// that learn the scheme only from this answer know to send their credentials.
    pub(crate) fn ping_headers(&self, h: &mut HeaderMap) {
        if self.push_enabled() || self.pull.is_some() {
            h.insert(header::WWW_AUTHENTICATE, challenge());
        }
    }
}

/// Middleware: the routes it guards answer only requests that may pull.
pub(crate) async fn pull_gate(
    axum::extract::State(m): axum::extract::State<super::Mirror>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    gate(&m, Need::Pull, req, next).await
}

/// Middleware: the routes it guards answer only requests that may read the status.
pub(crate) async fn status_gate(
    axum::extract::State(m): axum::extract::State<super::Mirror>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    gate(&m, Need::Status, req, next).await
}

async fn gate(
    m: &super::Mirror,
    need: Need,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match m.access().check(req.headers(), need) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn challenge() -> HeaderValue {
    HeaderValue::from_static("Basic realm=\"ferry\"")
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
        .with_header(header::WWW_AUTHENTICATE, challenge())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    fn status(r: Result<(), ApiError>) -> u16 {
        r.map_or_else(|e| e.status().as_u16(), |()| 200)
    }

    #[test]
    fn push_needs_a_push_token_and_pull_is_anonymous() {
        let a = Access {
            push: vec!["s3cret".into(), "other".into()],
            pull: None,
            status: None,
        };
        let none = HeaderMap::new();
        assert_eq!(status(a.check(&basic("ci", "s3cret"), Need::Push)), 200);
        assert_eq!(status(a.check(&basic("", "other"), Need::Push)), 200);
        assert_eq!(status(a.check(&bearer("s3cret"), Need::Push)), 200);
        assert_eq!(status(a.check(&none, Need::Push)), 401);
        assert_eq!(status(a.check(&basic("ci", "s3cre"), Need::Push)), 401);
        assert_eq!(status(a.check(&basic("ci", "s3cret2"), Need::Push)), 401);
        assert_eq!(status(a.check(&bearer("nope"), Need::Push)), 401);
        // Pulls are anonymous, whatever credentials come along.
        assert_eq!(status(a.check(&none, Need::Pull)), 200);
        assert_eq!(status(a.check(&basic("", ""), Need::Pull)), 200);
        assert_eq!(status(a.check(&bearer("junk"), Need::Pull)), 200);
        // The ping: anonymous fine, wrong credentials refused (so `login` notices).
        assert_eq!(status(a.check(&none, Need::Ping)), 200);
        assert_eq!(status(a.check(&basic("ci", "wrong"), Need::Ping)), 401);
        assert_eq!(status(a.check(&basic("ci", "s3cret"), Need::Ping)), 200);
    }

    #[test]
    fn without_push_tokens_push_is_denied() {
        let a = Access::default();
        assert_eq!(status(a.check(&basic("ci", "x"), Need::Push)), 403);
        assert_eq!(status(a.check(&HeaderMap::new(), Need::Pull)), 200);
    }

    #[test]
    fn pull_tokens_guard_pulls_and_cannot_push() {
        let a = Access {
            push: vec!["p".into()],
            pull: Some(vec!["r".into()]),
            status: None,
        };
        assert_eq!(status(a.check(&HeaderMap::new(), Need::Pull)), 401);
        assert_eq!(status(a.check(&basic("u", "r"), Need::Pull)), 200);
        assert_eq!(status(a.check(&basic("u", "p"), Need::Pull)), 200);
        assert_eq!(status(a.check(&basic("u", "r"), Need::Push)), 403);
        assert_eq!(status(a.check(&HeaderMap::new(), Need::Ping)), 401);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(status(a.check(&h, Need::Pull)), 401);
    }

    #[test]
    fn status_tokens_guard_the_status_page_alone() {
        let open = Access {
            pull: Some(vec!["r".into()]),
            ..Access::default()
        };
        assert_eq!(status(open.check(&HeaderMap::new(), Need::Status)), 200);
        let a = Access {
            push: vec!["p".into()],
            pull: None,
            status: Some(vec!["mon".into()]),
        };
        assert_eq!(status(a.check(&HeaderMap::new(), Need::Status)), 401);
        assert_eq!(status(a.check(&bearer("mon"), Need::Status)), 200);
        assert_eq!(status(a.check(&basic("prom", "mon"), Need::Status)), 200);
        // Neither a push token nor an empty password reads the status; the status token neither pulls nor pushes.
        assert_eq!(status(a.check(&bearer("p"), Need::Status)), 401);
        assert_eq!(status(a.check(&basic("prom", ""), Need::Status)), 401);
        assert_eq!(status(a.check(&bearer("mon"), Need::Push)), 401);
        let guarded = Access {
            pull: Some(vec!["r".into()]),
            ..a
        };
        assert_eq!(status(guarded.check(&bearer("mon"), Need::Pull)), 401);
    }

    #[test]
    fn token_files_skip_comments_and_blanks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "# CI tokens\n\n  abc  \n# old\ndef\n").unwrap();
        assert_eq!(read_tokens(&f).unwrap(), vec!["abc", "def"]);
        std::fs::write(&f, "# nothing\n\n").unwrap();
        assert!(matches!(read_tokens(&f), Err(TokenFileError::Empty(_))));
        let a = Access {
            push: vec!["secret-token".into()],
            pull: None,
            status: None,
        };
        assert!(!format!("{a:?}").contains("secret-token"));
    }
}
