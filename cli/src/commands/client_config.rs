//! `ferry client-config CLIENT --node URL`: the snippet that points a client at a node, built from what the node
//! says it serves (`/_ferry/images`, `/_ferry/repos`). The file's content goes to stdout, where to put it to stderr.

use crate::args::{ClientConfigArgs, ClientKind, Global};
use crate::output;
use anyhow::{bail, Context};
use reqwest::Url;
use serde::Deserialize;
use std::fmt::Write as _;

#[derive(Debug, Deserialize)]
struct Image {
    registry: Option<String>,
    repository: String,
}

#[derive(Debug, Deserialize)]
struct ReleaseRepos {
    release: String,
    version: String,
    current: bool,
    path: String,
    #[serde(default)]
    repositories: Vec<Repository>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    kind: String,
    path: String,
    #[serde(default)]
    suites: Vec<Suite>,
    /// The node's path of the OpenPGP key a partial mirror's metadata (apt Release files, yum repomd.xml) is
    /// signed with.
    #[serde(default)]
    signing_key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Suite {
    suite: String,
    #[serde(default)]
    components: Vec<String>,
}

pub fn run(_g: &Global, a: ClientConfigArgs) -> anyhow::Result<()> {
    let node = Url::parse(a.node.trim_end_matches('/')).with_context(|| {
        format!(
            "invalid --node {:?}: expected e.g. http://HOST:PORT",
            a.node
        )
    })?;
    if !matches!(node.scheme(), "http" | "https") || node.host_str().is_none() {
        bail!(
            "invalid --node {:?}: expected http://HOST[:PORT] or https://HOST[:PORT]",
            a.node
        );
    }
    let pinned = a.release.as_deref().is_some_and(|s| s.contains('@'));
    let text = match a.client {
        ClientKind::Containerd => return containerd(&node, &a),
        ClientKind::Docker => docker(&node),
        ClientKind::Podman => podman(&node, &fetch::<Vec<Image>>(&node, &a, "/_ferry/images")?),
        ClientKind::Apt => apt(&node, &repos(&node, &a)?, &a, pinned)?,
        ClientKind::Pip => pip(&node, &repos(&node, &a)?, pinned)?,
        ClientKind::Helm => helm(&node, &repos(&node, &a)?, pinned)?,
        ClientKind::Dnf => dnf(&node, &repos(&node, &a)?, &a, pinned)?,
    };
    output::line(text.trim_end_matches('\n'));
    Ok(())
}

/// `host:port` as clients name a registry.
fn authority(node: &Url) -> String {
    match node.port() {
        Some(p) => format!("{}:{p}", node.host_str().expect("checked")),
        None => node.host_str().expect("checked").to_string(),
    }
}

fn base(node: &Url) -> String {
    node.as_str().trim_end_matches('/').to_string()
}

fn fetch<T: serde::de::DeserializeOwned>(
    node: &Url,
    a: &ClientConfigArgs,
    path: &str,
) -> anyhow::Result<T> {
    let url = format!("{}{path}", base(node));
    let mut request = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?
        .get(&url);
    if let Some(f) = &a.token_file {
        let tokens = ferry_node::mirror::auth::read_tokens(f)?;
        request = request.bearer_auth(&tokens[0]);
    }
    let resp = request
        .send()
        .with_context(|| format!("asking the node at {url}"))?;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        bail!(
            "{url}: the node needs a pull token to say what it serves (--token-file FILE){}",
            if a.token_file.is_some() {
                "; the one given was refused"
            } else {
                ""
            }
        );
    }
    if !resp.status().is_success() {
        bail!(
            "{url}: the node answered {} (is it a ferry node?)",
            resp.status()
        );
    }
    resp.json()
        .with_context(|| format!("{url}: not the JSON a ferry node sends"))
}

/// The node's file-tree releases, the current version of each (or the one `--release` names).
fn repos(node: &Url, a: &ClientConfigArgs) -> anyhow::Result<Vec<ReleaseRepos>> {
    let all: Vec<ReleaseRepos> = fetch(node, a, "/_ferry/repos")?;
    let chosen: Vec<ReleaseRepos> = match &a.release {
        None => all.into_iter().filter(|r| r.current).collect(),
        Some(sel) => {
            let (name, version) = match sel.split_once('@') {
                Some((n, v)) => (n, Some(v)),
                None => (sel.as_str(), None),
            };
            let chosen: Vec<ReleaseRepos> = all
                .into_iter()
                .filter(|r| r.release == name && version.map_or(r.current, |v| r.version == v))
                .collect();
            if chosen.is_empty() {
                bail!("the node serves no release {sel}");
            }
            chosen
        }
    };
    Ok(chosen)
}

/// A repository's URL: under `current` unless a version was asked for, so the snippet follows the node's
/// current version (and, later, its pins).
fn repo_url(node: &Url, r: &ReleaseRepos, repo: &Repository, pinned: bool) -> String {
    let path = if pinned {
        repo.path.clone()
    } else {
        let versioned = format!("/repos/{}/{}/", r.release, r.version);
        match repo.path.strip_prefix(&versioned) {
            Some(rest) => format!("/repos/{}/current/{rest}", r.release),
            None => repo.path.clone(),
        }
    };
    format!("{}{path}", base(node))
}

fn of_kind<'a>(
    releases: &'a [ReleaseRepos],
    kind: &'a str,
) -> impl Iterator<Item = (&'a ReleaseRepos, &'a Repository)> {
    releases.iter().flat_map(move |r| {
        r.repositories
            .iter()
            .filter(move |repo| repo.kind == kind)
            .map(move |repo| (r, repo))
    })
}

fn none_served(kind: &str, releases: &[ReleaseRepos]) -> anyhow::Error {
    let names: Vec<String> = releases
        .iter()
        .map(|r| format!("{}@{} ({})", r.release, r.version, r.path))
        .collect();
    anyhow::anyhow!(
        "the node serves no {kind} repository{}",
        if names.is_empty() {
            String::new()
        } else {
            format!(" in {}", names.join(", "))
        }
    )
}

fn containerd(node: &Url, a: &ClientConfigArgs) -> anyhow::Result<()> {
    let images: Vec<Image> = fetch(node, a, "/_ferry/images")?;
    let mut hosts: Vec<&str> = images
        .iter()
        .filter_map(|i| i.registry.as_deref())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let direct: Vec<&str> = images
        .iter()
        .filter(|i| i.registry.is_none())
        .map(|i| i.repository.as_str())
        .collect();
    if hosts.is_empty() && direct.is_empty() {
        bail!("the node serves no images yet");
    }
    let file = |host: &str| {
        let server = match host {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            h => format!("https://{h}"),
        };
        format!(
            "server = \"{server}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            base(node)
        )
    };
    match &a.out {
        Some(dir) => {
            for host in &hosts {
                let d = dir.join(host);
                std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
                let path = d.join("hosts.toml");
                std::fs::write(&path, file(host))
                    .with_context(|| format!("writing {}", path.display()))?;
                output::line(path.display());
            }
        }
        None => {
            let mut text = String::new();
            for host in &hosts {
                let _ = write!(
                    text,
                    "# /etc/containerd/certs.d/{host}/hosts.toml\n{}\n",
                    file(host)
                );
            }
            output::line(text.trim_end_matches('\n'));
        }
    }
    output::note(format!(
        "containerd: one hosts.toml per upstream registry under the directory its registry config_path names \
         (e.g. /etc/containerd/certs.d; `ctr images pull --hosts-dir DIR`); pulls of {} then go to {} first{}",
        if hosts.is_empty() { "nothing".to_string() } else { hosts.join(", ") },
        base(node),
        if direct.is_empty() {
            String::new()
        } else {
            format!(
                ". Images without an upstream registry are pulled from the node by name: {}/{}",
                authority(node),
                direct[0]
            )
        }
    ));
    Ok(())
}

fn docker(node: &Url) -> String {
    output::note(
        "docker: merge into /etc/docker/daemon.json and restart dockerd; Docker uses mirrors for docker.io images \
         only — pull anything else from the node by name",
    );
    let mut v = serde_json::json!({ "registry-mirrors": [base(node)] });
    if node.scheme() == "http" {
        v["insecure-registries"] = serde_json::json!([authority(node)]);
    }
    format!("{}\n", serde_json::to_string_pretty(&v).expect("json"))
}

fn podman(node: &Url, images: &[Image]) -> String {
    output::note(
        "podman, buildah, skopeo, CRI-O: put this in /etc/containers/registries.conf.d/ferry.conf (or \
         $CONTAINERS_REGISTRIES_CONF)",
    );
    let insecure = node.scheme() == "http";
    let mut hosts: Vec<&str> = images
        .iter()
        .filter_map(|i| i.registry.as_deref())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let mut text = String::new();
    for host in hosts {
        let _ = write!(
            text,
            "[[registry]]\nprefix = \"{host}\"\nlocation = \"{host}\"\n\n[[registry.mirror]]\nlocation = \"{}\"\n{}\n",
            authority(node),
            if insecure { "insecure = true\n" } else { "" }
        );
    }
    let _ = write!(
        text,
        "# the node itself, for images pulled from it by name\n[[registry]]\nlocation = \"{}\"\n{}",
        authority(node),
        if insecure { "insecure = true\n" } else { "" }
    );
    text
}

fn apt(
    node: &Url,
    releases: &[ReleaseRepos],
    a: &ClientConfigArgs,
    pinned: bool,
) -> anyhow::Result<String> {
    let upstream = match &a.signed_by {
        Some(key) => format!("[signed-by={}] ", key.display()),
        None => String::new(),
    };
    let mut text = String::new();
    let mut keys = Vec::new();
    let mut whole = false;
    for (r, repo) in of_kind(releases, "apt") {
        let url = repo_url(node, r, repo, pinned);
        // A partial mirror is signed by the seed's repository key, which it carries: name where it goes.
        let options = match &repo.signing_key {
            Some(key) => {
                let file = format!("/etc/apt/keyrings/ferry-{}.asc", r.release);
                let fetch = format!("curl -fsSL {}{key} -o {file}", base(node));
                if !keys.contains(&fetch) {
                    keys.push(fetch);
                }
                format!("[signed-by={file}] ")
            }
            None => {
                whole = true;
                upstream.clone()
            }
        };
        for s in &repo.suites {
            let _ = writeln!(
                text,
                "deb {options}{url} {} {}",
                s.suite,
                s.components.join(" ")
            );
        }
    }
    if text.is_empty() {
        return Err(none_served("apt", releases));
    }
    let mut note = String::from("apt: put these lines in /etc/apt/sources.list.d/ferry.list");
    if whole {
        note.push_str(
            "; a whole mirror's Release and InRelease are the upstream's own, so apt checks them with the \
             upstream's key (--signed-by FILE names it)",
        );
    }
    if !keys.is_empty() {
        let _ = write!(
            note,
            "; a partial mirror is signed by the seed store's repository key (`ferry keys export --openpgp` on \
             the seed prints it), which it carries: check its fingerprint against the seed's, then put it where \
             signed-by says:\n  {}",
            keys.join("\n  ")
        );
    }
    output::note(&note);
    Ok(text)
}

/// A `.repo` file: a section per yum repository. A partial mirror's `repomd.xml` is signed by the seed's
/// repository key, which the node serves; a whole mirror's is the upstream's own. The rpms are always the
/// upstream's, checked with `--signed-by`.
fn dnf(
    node: &Url,
    releases: &[ReleaseRepos],
    a: &ClientConfigArgs,
    pinned: bool,
) -> anyhow::Result<String> {
    let upstream = a
        .signed_by
        .as_ref()
        .map(|k| format!("file://{}", k.display()));
    let mut text = String::new();
    let mut partial = false;
    for (n, (r, repo)) in of_kind(releases, "yum").enumerate() {
        let id = match n {
            0 => format!("ferry-{}", r.release.replace('/', "-")),
            n => format!("ferry-{}-{n}", r.release.replace('/', "-")),
        };
        let mut keys: Vec<String> = Vec::new();
        if let Some(key) = &repo.signing_key {
            partial = true;
            keys.push(format!("{}{key}", base(node)));
        }
        keys.extend(upstream.clone());
        let _ = writeln!(
            text,
            "[{id}]\nname={} through ferry\nbaseurl={}\nenabled=1\ngpgcheck={}\nrepo_gpgcheck={}",
            r.release,
            repo_url(node, r, repo, pinned),
            u8::from(upstream.is_some()),
            u8::from(repo.signing_key.is_some() || upstream.is_some()),
        );
        if !keys.is_empty() {
            let _ = writeln!(text, "gpgkey={}", keys.join(" "));
        }
        text.push('\n');
    }
    if text.is_empty() {
        return Err(none_served("yum", releases));
    }
    let mut note = String::from("dnf: put this in /etc/yum.repos.d/ferry.repo");
    if upstream.is_none() {
        note.push_str(
            "; with --signed-by FILE (the publisher's key) dnf also checks every rpm's signature (gpgcheck)",
        );
    }
    if partial {
        note.push_str(
            "; a partial mirror's metadata is signed by the seed store's repository key (`ferry keys export \
             --openpgp` on the seed prints it), which the node serves: check the fingerprint dnf shows on import \
             against the seed's",
        );
    }
    output::note(&note);
    Ok(text)
}

fn pip(node: &Url, releases: &[ReleaseRepos], pinned: bool) -> anyhow::Result<String> {
    let urls: Vec<String> = of_kind(releases, "pypi")
        .map(|(r, repo)| repo_url(node, r, repo, pinned))
        .collect();
    let Some((first, rest)) = urls.split_first() else {
        return Err(none_served("PyPI", releases));
    };
    output::note("pip: put this in /etc/pip.conf (or ~/.config/pip/pip.conf, or $PIP_CONFIG_FILE)");
    let mut text = format!("[global]\nindex-url = {first}\n");
    if !rest.is_empty() {
        let _ = writeln!(text, "extra-index-url =\n    {}", rest.join("\n    "));
    }
    if node.scheme() == "http" {
        let _ = writeln!(text, "trusted-host = {}", node.host_str().expect("checked"));
    }
    Ok(text)
}

fn helm(node: &Url, releases: &[ReleaseRepos], pinned: bool) -> anyhow::Result<String> {
    let mut text = String::new();
    for (r, repo) in of_kind(releases, "helm") {
        let _ = writeln!(
            text,
            "helm repo add {} {}",
            r.release.replace('/', "-"),
            repo_url(node, r, repo, pinned)
        );
    }
    if text.is_empty() {
        return Err(none_served("Helm", releases));
    }
    output::note("helm: run these, then `helm repo update`");
    Ok(text)
}
