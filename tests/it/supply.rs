//! Supply chain across the gap (issue 23): upstream signatures checked at ingest against a policy
//! (`ferry add --verify`), and carried with what they sign — cosign signature tags and OCI referrers (an SBOM) —
//! through a bundle to a site whose registry serves them to real clients.

use std::fs;

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{images as image_entries, Store};
use ferry_tests::fixtures::{apt_repo, images};
use ferry_tests::node::Node;
use ferry_tests::registry::Registry;
use ferry_tests::sigstore::{self, Key, Pusher};

fn write_policy(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Export `release` from `seed`, import it at a new site that trusts the seed, and serve the site.
fn carry(seed: &Store, release: &str) -> (Store, Node) {
    let bundle = seed.tmp_path("bundle");
    seed.json(["export", release, "--out", bundle.to_str().unwrap()]);
    let site = Store::new();
    let key = seed.tmp_path("seed.pub");
    fs::write(&key, seed.run(["keys", "export"]).ok().stdout).unwrap();
    site.run(["trust", "add", key.to_str().unwrap()]).ok();
    site.json(["import", bundle.to_str().unwrap()]);
    let node = Node::start(&site.path);
    (site, node)
}

/// The manifest of `image` as the node's registry serves it to `skopeo inspect --raw`.
fn raw_at(node: &Node, image: &str) -> Vec<u8> {
    run_ok(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{image}", node.addr),
        ],
    )
    .stdout_bytes
}

/// A fresh GnuPG home at `dir` (mode 0700, as gpg wants it).
fn gnupg_home(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir.to_path_buf()
}

/// `gpg --batch --quiet ARGS` with GNUPGHOME `home`.
fn gpg_in(home: &std::path::Path, args: &[&str]) -> ferry_tests::cmd::Output {
    let mut c = std::process::Command::new("gpg");
    c.env("GNUPGHOME", home)
        .args(["--batch", "--quiet"])
        .args(args);
    ferry_tests::cmd::run(&mut c)
}

/// What the node's referrers API lists for `digest` in `repo`.
fn referrers_at(node: &Node, repo: &str, digest: &str) -> serde_json::Value {
    let r = reqwest::blocking::Client::new()
        .get(node.url(&format!("/v2/{repo}/referrers/{digest}")))
        .send()
        .unwrap();
    assert!(
        r.status().is_success(),
        "referrers of {digest}: {}",
        r.status()
    );
    serde_json::from_slice(&r.bytes().unwrap()).unwrap()
}

#[test]
fn a_signed_image_is_checked_at_the_seed_and_crosses_with_its_signature_and_sbom() {
    let imgs = images();
    let upstream = Registry::start();
    upstream.push(&imgs.layout, "v1", "team/app:v1", false);
    upstream.push(&imgs.layout, "v2", "team/app:v2", false);
    let v1 = upstream.digest("team/app:v1");
    let v2 = upstream.digest("team/app:v2");
    let v1_size = upstream.raw_manifest("team/app:v1").len();

    let seed = Store::new();
    let work = seed.tmp_path("keys");
    fs::create_dir_all(&work).unwrap();
    let (ours, theirs) = (Key::new(&work, "publisher"), Key::new(&work, "stranger"));
    let push = Pusher::new(&upstream.host);
    let reference = format!("{}/team/app:v1", upstream.host);
    let signature_manifest = sigstore::push_signature(
        &push,
        &work,
        "team/app",
        &v1,
        &sigstore::payload(&reference, &v1),
        &ours,
    );
    let sbom = br#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"team/app","packages":[{"name":"hello","versionInfo":"1"}]}"#;
    let sbom_manifest = sigstore::push_sbom(&push, "team/app", (&v1, v1_size), sbom);
    // A hostile signature tag: v2's `.sig` holds a good signature by our key — of v1's digest.
    sigstore::push_signature(
        &push,
        &work,
        "team/app",
        &v2,
        &sigstore::payload(&reference, &v1),
        &ours,
    );

    let rule = |key: &Key| {
        format!(
            "[[rule]]\nmatch = \"docker://{}/team/app:*\"\ncosign = [\"{}\"]\n",
            upstream.host,
            key.public.display()
        )
    };
    let good = write_policy(&work, "good.toml", &rule(&ours));
    let wrong = write_policy(&work, "wrong.toml", &rule(&theirs));
    let add = |release: &str, tag: &str, policy: &str| {
        seed.run([
            "add",
            release,
            &upstream.url(&format!("team/app:{tag}")),
            "--insecure-registry",
            &upstream.host,
            "--verify",
            policy,
        ])
    };

    // Signed by another key than the policy names: refused before anything is stored, naming image and key.
    let out = add("app@0", "v1", &wrong).expect_code(1);
    let e = out.error_lines().join("\n");
    assert!(e.contains(&v1) && e.contains("stranger.pub"), "{e}");
    assert!(e.contains("none of its 1 signature(s) is good"), "{e}");
    assert!(!seed.lists("app", "0"));
    // A signature that is good, but for another digest.
    let e = add("app@0", "v2", &good)
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains(&v2) && e.contains(&format!("is for {v1}")),
        "{e}"
    );
    // No signature at all.
    upstream.push(&imgs.layout, "v2", "team/unsigned:v2", false);
    let e = seed
        .run([
            "add",
            "app@0",
            &upstream.url("team/unsigned:v2"),
            "--insecure-registry",
            &upstream.host,
            "--verify",
            &write_policy(
                &work,
                "all.toml",
                &format!(
                    "[[rule]]\nmatch = \"docker://*\"\ncosign = [\"{}\"]\n",
                    ours.public.display()
                ),
            ),
        ])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains("no cosign signature") && e.contains("team/unsigned:v2"),
        "{e}"
    );
    // A source no rule names.
    let e = seed
        .run(["add", "app@0", &format!("file:{}", good), "--verify", &good])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(e.contains("no rule matches"), "{e}");
    assert!(!seed.lists("app", "0"));

    // Signed by the policy's key: accepted, and the signature tag and the SBOM come along.
    let report = seed.json([
        "add",
        "app@1",
        &upstream.url("team/app:v1"),
        "--insecure-registry",
        &upstream.host,
        "--verify",
        &good,
    ]);
    assert_eq!(report["verified"][0]["scheme"], "cosign", "{report}");
    assert!(
        report["verified"][0]["key"]
            .as_str()
            .unwrap()
            .contains("publisher.pub"),
        "{report}"
    );
    let show = seed.show("app@1");
    let tags: Vec<&str> = image_entries(&show)
        .iter()
        .map(|i| i["tag"].as_str().unwrap())
        .collect();
    let sig_tag = format!("{}.sig", v1.replace(':', "-"));
    assert_eq!(tags, ["v1", sig_tag.as_str()], "{show}");

    // Across the gap: a bundle, imported at a site that trusts the seed.
    let (_site, node) = carry(&seed, "app@1");
    let http = reqwest::blocking::Client::new();
    let get = |path: &str, accept: &str| {
        let r = http
            .get(node.url(path))
            .header("accept", accept)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.bytes().unwrap().to_vec()
    };

    // The site's registry serves the signature tag; skopeo reads it, and openssl checks the upstream signature
    // against the upstream key, unchanged.
    let sig_raw = raw_at(&node, &format!("team/app:{sig_tag}"));
    assert_eq!(
        format!("sha256:{}", ferry_tests::fsutil::sha256_hex(&sig_raw)),
        signature_manifest
    );
    let sig_json: serde_json::Value = serde_json::from_slice(&sig_raw).unwrap();
    let layer = &sig_json["layers"][0];
    let payload = get(
        &format!("/v2/team/app/blobs/{}", layer["digest"].as_str().unwrap()),
        "*/*",
    );
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(
            layer["annotations"][sigstore::SIGNATURE_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(sigstore::openssl_verifies(
        &work,
        &ours.public,
        &payload,
        &signature
    ));
    assert!(!sigstore::openssl_verifies(
        &work,
        &theirs.public,
        &payload,
        &signature
    ));
    let named: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        named["critical"]["image"]["docker-manifest-digest"],
        v1.as_str()
    );

    // skopeo, told the site keeps sigstore attachments, copies the image with its signature onwards.
    let regd = seed.tmp_path("registries.d");
    fs::create_dir_all(&regd).unwrap();
    let onward = Registry::start();
    fs::write(
        regd.join("sigstore.yaml"),
        format!(
            "docker:\n  {}:\n    use-sigstore-attachments: true\n  {}:\n    use-sigstore-attachments: true\n",
            node.addr, onward.host
        ),
    )
    .unwrap();
    let copy = run_ok(
        "skopeo",
        [
            "--registries.d",
            regd.to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{}/team/app:v1", node.addr),
            &onward.url("team/app:v1"),
        ],
    );
    assert!(copy.stdout.contains("Storing signatures"), "{copy}");
    // skopeo writes the signature manifest anew, with the same payload and signature.
    let copied: serde_json::Value =
        serde_json::from_slice(&onward.raw_manifest(&format!("team/app:{sig_tag}"))).unwrap();
    assert_eq!(copied["layers"][0]["digest"], layer["digest"], "{copied}");
    assert_eq!(
        copied["layers"][0]["annotations"][sigstore::SIGNATURE_ANNOTATION],
        layer["annotations"][sigstore::SIGNATURE_ANNOTATION],
        "{copied}"
    );

    // The SBOM arrived as a referrer: the referrers API lists it with its artifact type, and serves its bytes.
    let referrers: serde_json::Value = serde_json::from_slice(&get(
        &format!("/v2/team/app/referrers/{v1}"),
        "application/vnd.oci.image.index.v1+json",
    ))
    .unwrap();
    let listed = referrers["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{referrers}");
    assert_eq!(listed[0]["digest"], sbom_manifest.as_str(), "{referrers}");
    assert_eq!(
        listed[0]["artifactType"], "application/spdx+json",
        "{referrers}"
    );
    let m: serde_json::Value = serde_json::from_slice(&get(
        &format!("/v2/team/app/manifests/{sbom_manifest}"),
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    let served = get(
        &format!(
            "/v2/team/app/blobs/{}",
            m["layers"][0]["digest"].as_str().unwrap()
        ),
        "*/*",
    );
    assert_eq!(served, sbom);
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn repositories_and_files_pass_only_with_the_policys_keys() {
    let repo = apt_repo();
    let s = Store::new();
    let dir = s.tmp_path("policy");
    fs::create_dir_all(&dir).unwrap();
    let apt_rule = |keyring: &str| {
        format!(
            "[[rule]]\nmatch = \"apt:{}\"\nopenpgp = [\"{keyring}\"]\n",
            repo.root.display()
        )
    };
    let apt = format!("apt:{}", repo.root.display());

    // The InRelease signed by the test repository's throwaway key: accepted with that key, refused with another.
    let good = write_policy(&dir, "apt-good.toml", &apt_rule(repo.key.to_str().unwrap()));
    let r = s.json(["add", "debs@1", &apt, "--verify", &good]);
    assert_eq!(r["verified"][0]["scheme"], "openpgp", "{r}");
    let debian = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let wrong = write_policy(&dir, "apt-wrong.toml", &apt_rule(debian));
    let e = s
        .run(["add", "debs@2", &apt, "--verify", &wrong])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains("InRelease") && e.contains("upstream signature refused"),
        "{e}"
    );
    assert!(!s.lists("debs", "2"));

    // Files: a detached OpenPGP signature made by gpg, and a minisign signature made by minisign.
    let gnupg = gnupg_home(&dir.join("gnupg"));
    let gpg = |args: &[&str]| gpg_in(&gnupg, args).ok();
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "Release <release@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    let public = dir.join("release.asc");
    fs::write(&public, gpg(&["--armor", "--export"]).stdout_bytes).unwrap();
    let tarball = dir.join("tool-1.0.tar.gz");
    fs::write(&tarball, b"pretend this is a release tarball\n").unwrap();
    gpg(&[
        "--armor",
        "--detach-sign",
        "--output",
        &format!("{}.asc", tarball.display()),
        tarball.to_str().unwrap(),
    ]);

    let (mpub, msec) = (dir.join("minisign.pub"), dir.join("minisign.key"));
    run_ok(
        "minisign",
        [
            "-G",
            "-W",
            "-p",
            mpub.to_str().unwrap(),
            "-s",
            msec.to_str().unwrap(),
        ],
    );
    let other = dir.join("other.bin");
    fs::write(&other, vec![7u8; 300_000]).unwrap();
    run_ok(
        "minisign",
        [
            "-S",
            "-s",
            msec.to_str().unwrap(),
            "-m",
            other.to_str().unwrap(),
        ],
    );

    let files = write_policy(
        &dir,
        "files.toml",
        &format!(
            "[[rule]]\nmatch = \"file:*.tar.gz\"\nopenpgp = [\"{}\"]\n[[rule]]\nmatch = \"file:*.bin\"\nminisign = [\"{}\"]\n",
            public.display(),
            mpub.display()
        ),
    );
    let file = |p: &std::path::Path| format!("file:{}", p.display());
    let r = s.json([
        "add",
        "files@1",
        &file(&tarball),
        &file(&other),
        "--verify",
        &files,
    ]);
    let schemes: Vec<&str> = r["verified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["scheme"].as_str().unwrap())
        .collect();
    assert_eq!(schemes, ["openpgp", "minisign"], "{r}");

    // Changed after signing: both refused, each named.
    fs::write(&tarball, b"pretend this is a release tarball, changed\n").unwrap();
    let e = s
        .run(["add", "files@2", &file(&tarball), "--verify", &files])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains("tool-1.0.tar.gz") && e.contains("release.asc"),
        "{e}"
    );
    let mut bytes = fs::read(&other).unwrap();
    bytes[1000] ^= 1;
    fs::write(&other, bytes).unwrap();
    let e = s
        .run(["add", "files@2", &file(&other), "--verify", &files])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(e.contains("other.bin") && e.contains("minisign key"), "{e}");
    // No signature next to the file.
    fs::remove_file(format!("{}.minisig", other.display())).unwrap();
    let e = s
        .run(["add", "files@2", &file(&other), "--verify", &files])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(e.contains("no detached signature"), "{e}");
    assert!(!s.lists("files", "2"));
    // A key that has expired: its good signature is refused, saying so.
    let old_home = dir.join("gnupg-2020");
    fs::create_dir_all(&old_home).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&old_home, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let old_gpg = |args: &[&str]| {
        let mut c = std::process::Command::new("gpg");
        c.env("GNUPGHOME", &old_home)
            .args([
                "--batch",
                "--quiet",
                "--faked-system-time",
                "20200101T000000!",
            ])
            .args(args);
        ferry_tests::cmd::run(&mut c).ok()
    };
    old_gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "Old <old@example.org>",
        "ed25519",
        "sign",
        "1d",
    ]);
    let old_public = dir.join("old.asc");
    fs::write(&old_public, old_gpg(&["--armor", "--export"]).stdout_bytes).unwrap();
    let old_file = dir.join("legacy-1.0.tar.gz");
    fs::write(&old_file, b"signed in 2020\n").unwrap();
    old_gpg(&[
        "--armor",
        "--detach-sign",
        "--output",
        &format!("{}.asc", old_file.display()),
        old_file.to_str().unwrap(),
    ]);
    let expired = write_policy(
        &dir,
        "expired.toml",
        &format!(
            "[[rule]]\nmatch = \"file:*\"\nopenpgp = [\"{}\"]\n",
            old_public.display()
        ),
    );
    let e = s
        .run(["add", "files@2", &file(&old_file), "--verify", &expired])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains("legacy-1.0.tar.gz") && e.contains("expired on 2020-01-02"),
        "{e}"
    );

    // A rule asking for signatures a source kind cannot carry.
    let e = s
        .run([
            "add",
            "files@2",
            &format!("dir:{}", dir.display()),
            "--verify",
            &write_policy(
                &dir,
                "dir.toml",
                &format!(
                    "[[rule]]\nmatch = \"dir:*\"\nminisign = [\"{}\"]\n",
                    mpub.display()
                ),
            ),
        ])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(e.contains("a dir: source cannot carry"), "{e}");
}

#[test]
fn the_audit_trail_follows_content_across_the_gap_and_catches_one_changed_byte() {
    let imgs = images();
    let seed = Store::new();
    let dir = seed.tmp_path("policy");
    fs::create_dir_all(&dir).unwrap();
    let policy = write_policy(
        &dir,
        "p.toml",
        "[[rule]]\nmatch = \"oci:*\"\nunsigned = true\n",
    );
    let layout = format!("oci:{}:v1", imgs.layout.display());
    seed.json(["add", "img@1", &layout, "--verify", &policy]);
    seed.run(["pin", "set", "img", "1"]).ok();
    let bundle = seed.tmp_path("bundle");
    seed.json([
        "export",
        "img@1",
        "--out",
        bundle.to_str().unwrap(),
        "--site",
        "plant-7",
    ]);

    let trail = |s: &Store| s.json(["audit", "ls"]).as_array().unwrap().clone();
    let events = |t: &[serde_json::Value]| -> Vec<String> {
        t.iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect()
    };
    let seed_trail = trail(&seed);
    assert_eq!(
        events(&seed_trail),
        ["ingest", "pin", "export"],
        "{seed_trail:?}"
    );
    assert_eq!(seed_trail[0]["detail"]["verified"][0]["scheme"], "unsigned");
    assert_eq!(seed_trail[0]["detail"]["sources"][0], layout.as_str());
    assert_eq!(seed_trail[2]["detail"]["site"], "plant-7");
    let v = seed.json(["audit", "verify"]);
    assert_eq!(v["entries"], 3, "{v}");

    // A carried entry changed in the bundle: the import is refused, naming the file and the line.
    let site = Store::new();
    let key = seed.tmp_path("seed.pub");
    fs::write(&key, seed.run(["keys", "export"]).ok().stdout).unwrap();
    site.run(["trust", "add", key.to_str().unwrap()]).ok();
    let carried = bundle.join("audit.jsonl");
    let original = fs::read_to_string(&carried).unwrap();
    assert_eq!(original.lines().count(), 3, "{original}");
    fs::write(&carried, original.replacen("\"img@1\"", "\"img@9\"", 1)).unwrap();
    let e = site
        .run(["import", bundle.to_str().unwrap()])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains("audit.jsonl line 1") && e.contains("not signed by a trusted key"),
        "{e}"
    );
    assert!(!site.lists("img", "1"));
    fs::write(&carried, &original).unwrap();

    // Imported: the site's log continues the seed's chain from its export entry.
    site.json(["import", bundle.to_str().unwrap()]);
    let site_trail = trail(&site);
    assert_eq!(events(&site_trail), ["import"], "{site_trail:?}");
    let import = &site_trail[0]["detail"];
    assert_eq!(import["carried"].as_array().unwrap().len(), 3, "{import}");
    assert_eq!(import["carried"][2]["event"], "export", "{import}");
    assert_eq!(
        import["bundle"], seed_trail[2]["detail"]["bundle"],
        "{import}"
    );
    let v = site.json(["audit", "verify"]);
    assert_eq!(
        (v["entries"].as_u64(), v["carried"].as_u64()),
        (Some(1), Some(3)),
        "{v}"
    );

    // An auditor checks the seed's exported log with the seed's public key alone.
    let exported = seed.tmp_path("seed-audit.jsonl");
    seed.run(["audit", "export", "--out", exported.to_str().unwrap()])
        .ok();
    let v = Store::new().json([
        "audit",
        "verify",
        "--file",
        exported.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(v["entries"], 3, "{v}");

    // One byte of the seed's log changed: verify fails, naming the entry.
    let log = seed.path.join("audit.log");
    let mut bytes = fs::read(&log).unwrap();
    let at = bytes.windows(6).position(|w| w == b"plant-").unwrap();
    bytes[at] = b'P';
    fs::write(&log, bytes).unwrap();
    let out = seed.run(["audit", "verify"]).expect_code(1);
    assert!(out.stdout.contains("line 3 (entry 3)"), "{out}");
    assert!(out.error_line().contains("entry 3"), "{out}");
}

#[test]
fn images_named_by_charts_and_manifests_come_with_them() {
    let imgs = images();
    let upstream = Registry::start();
    let host = upstream.host.clone();
    for (tag, repo_tag) in [
        ("v1", "team/app:v1"),
        ("v2", "team/app:v2"),
        ("v2", "team/worker:v2"),
        ("v1", "team/side:v1"),
        ("v2", "team/cache:v2"),
    ] {
        upstream.push(&imgs.layout, tag, repo_tag, false);
    }
    let s = Store::new();
    let src = s.tmp_path("chart-src");
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    write(
        "web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 1.2.0\nappVersion: v1\ndependencies:\n  - name: cache\n    version: 0.1.0\n  - name: metrics\n    version: 0.1.0\n    condition: metrics.enabled\n",
    );
    write(
        "web/values.yaml",
        &format!(
            "image:\n  registry: {host}\n  repository: team/app\n\
             worker:\n  image: {host}/team/worker:v2\n\
             extra:\n  image: \"{{{{ .Values.global.extraImage }}}}\"\n\
             cache:\n  image:\n    tag: v2\n\
             metrics:\n  enabled: false\n"
        ),
    );
    write(
        "web/templates/deploy.yaml",
        &format!(
            "spec:\n  containers:\n    - name: app\n      image: \"{{{{ .Values.image.registry }}}}/{{{{ .Values.image.repository }}}}:{{{{ .Values.image.tag | default .Chart.AppVersion }}}}\"\n    - name: side\n      image: {host}/team/side:v1\n"
        ),
    );
    // A subchart the values turn off: helm would not render it, and its image is nowhere to be pulled.
    write(
        "web/charts/metrics/Chart.yaml",
        "apiVersion: v2\nname: metrics\nversion: 0.1.0\n",
    );
    write(
        "web/charts/metrics/values.yaml",
        &format!("image: {host}/team/metrics:v9\n"),
    );
    write(
        "web/charts/cache/Chart.yaml",
        "apiVersion: v2\nname: cache\nversion: 0.1.0\n",
    );
    write(
        "web/charts/cache/values.yaml",
        &format!("image:\n  registry: {host}\n  repository: team/cache\n  tag: v1\n"),
    );
    let charts = s.tmp_path("charts");
    fs::create_dir_all(&charts).unwrap();
    run_ok(
        "tar",
        [
            "-czf",
            charts.join("web-1.2.0.tgz").to_str().unwrap(),
            "-C",
            src.to_str().unwrap(),
            "web",
        ],
    );
    let overrides = s.tmp_path("override.yaml");
    fs::write(&overrides, "image:\n  tag: v2\n").unwrap();

    let source = format!(
        "helm:{}?images=yes&values={}",
        charts.display(),
        overrides.display()
    );
    s.json(["add", "web@1", &source, "--insecure-registry", &host]);
    let show = s.show("web@1");
    let mut refs: Vec<String> = image_entries(&show)
        .iter()
        .map(|i| {
            format!(
                "{}/{}:{}",
                i["registry"].as_str().unwrap(),
                i["repository"].as_str().unwrap(),
                i["tag"].as_str().unwrap()
            )
        })
        .collect();
    refs.sort();
    let want: Vec<String> = [
        "team/app:v2",
        "team/cache:v2",
        "team/side:v1",
        "team/worker:v2",
    ]
    .iter()
    .map(|r| format!("{host}/{r}"))
    .collect();
    assert_eq!(refs, want, "{show}");
    // Per chart, with what could not be resolved.
    let named = &show["named_images"][0]["named"][0];
    assert_eq!(named["source"], "web-1.2.0.tgz", "{show}");
    assert_eq!(named["chart"], "web 1.2.0", "{show}");
    assert_eq!(named["images"].as_array().unwrap().len(), 4, "{show}");
    assert_eq!(named["disabled"].as_array().unwrap().len(), 1, "{show}");
    assert_eq!(
        named["unresolved"][0]["at"], "web-1.2.0.tgz: web/values.yaml: extra.image",
        "{show}"
    );
    let text = s.run(["show", "web@1"]).ok().stdout;
    assert!(
        text.contains("web-1.2.0.tgz (web 1.2.0)")
            && text.contains("unresolved at")
            && text.contains("not taken: web-1.2.0.tgz: web: subchart metrics: condition metrics.enabled is false"),
        "{text}"
    );

    // The site serves the chart repository and the images, with the digests upstream has.
    let node = Node::start(&s.path);
    let served = run_ok(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/team/cache:v2", node.addr),
        ],
    )
    .stdout_bytes;
    assert_eq!(served, upstream.raw_manifest("team/cache:v2"));
    assert_eq!(node.stop(), Some(0));

    // Plain manifests: every image they name.
    let manifests = s.tmp_path("manifests");
    fs::create_dir_all(manifests.join("base")).unwrap();
    fs::write(
        manifests.join("base/deploy.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: init\n          image: {host}/team/side:v1\n      containers:\n        - name: app\n          image: {host}/team/app:v1\n---\napiVersion: v1\nkind: Service\n"
        ),
    )
    .unwrap();
    s.json([
        "add",
        "deploy@1",
        &format!("k8s:{}", manifests.display()),
        "--insecure-registry",
        &host,
    ]);
    let show = s.show("deploy@1");
    assert_eq!(image_entries(&show).len(), 2, "{show}");
    assert!(
        show["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "k8s/base/deploy.yaml"),
        "{show}"
    );

    // A chart whose values do not parse is refused, naming the chart; an image the registry lacks, naming who
    // needs it.
    let bad = s.tmp_path("bad-charts");
    fs::create_dir_all(&bad).unwrap();
    write("web/values.yaml", "image: [unclosed\n");
    run_ok(
        "tar",
        [
            "-czf",
            bad.join("web-1.2.0.tgz").to_str().unwrap(),
            "-C",
            src.to_str().unwrap(),
            "web",
        ],
    );
    let e = s
        .run([
            "add",
            "web@2",
            &format!("helm:{}?images=yes", bad.display()),
        ])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains("web-1.2.0.tgz") && e.contains("values.yaml"),
        "{e}"
    );
    fs::write(
        manifests.join("base/deploy.yaml"),
        format!("kind: Pod\nspec:\n  containers:\n    - image: {host}/team/missing:v9\n"),
    )
    .unwrap();
    let e = s
        .run([
            "add",
            "deploy@2",
            &format!("k8s:{}", manifests.display()),
            "--insecure-registry",
            &host,
        ])
        .expect_code(1)
        .error_lines()
        .join("\n");
    assert!(
        e.contains("team/missing:v9") && e.contains("base/deploy.yaml"),
        "{e}"
    );
    assert!(!s.lists("deploy", "2") && !s.lists("web", "2"));
}

/// Copy `name` from the upstream sigstore test data to `dir/as_name`.
fn upstream_file(dir: &std::path::Path, name: &str, as_name: &str) -> std::path::PathBuf {
    let to = dir.join(as_name);
    fs::copy(sigstore::upstream_bundles().join(name), &to).unwrap();
    to
}

#[test]
fn keyless_bundles_from_sigstores_public_instance_are_checked_offline() {
    let seed = Store::new();
    let dir = seed.tmp_path("files");
    fs::create_dir_all(&dir).unwrap();
    // Two real artifacts signed on Sigstore's public-good instance: a blob `cosign sign-blob` signed (a message
    // signature, by a GitHub account), and a conda package GitHub's attestation action signed in CI (an in-toto
    // statement in a DSSE envelope, naming the package's SHA-256).
    let blob = upstream_file(&dir, "bundles/cosign-v3-blob.txt", "blob.txt");
    upstream_file(
        &dir,
        "bundles/cosign-v3-blob.sigstore.json",
        "blob.txt.sigstore.json",
    );
    let conda = upstream_file(
        &dir,
        "bundles/signed-package-2.1.0-hb0f4dca_0.conda",
        "signed-package-2.1.0-hb0f4dca_0.conda",
    );
    upstream_file(
        &dir,
        "bundles/conda-attestation.sigstore.json",
        "signed-package-2.1.0-hb0f4dca_0.conda.sigstore",
    );
    let workflow = "https://github.com/prefix-dev/sigstore-example/.github/workflows/action.yaml@refs/heads/main";
    let actions = "https://token.actions.githubusercontent.com";
    let policy = |conda_identity: &str, conda_issuer: &str, root: &str| {
        format!(
            "[[rule]]\nmatch = \"file:*blob.txt\"\n[[rule.keyless]]\nidentity = \"*\"\nissuer = \"https://github.com/login/oauth\"\n{root}\n\
             [[rule]]\nmatch = \"file:*.conda\"\n[[rule.keyless]]\nidentity = \"{conda_identity}\"\nissuer = \"{conda_issuer}\"\n{root}\n"
        )
    };
    let args = |release: &str, policy: &str, files: &[&std::path::Path]| {
        let mut args = vec!["add".to_string(), release.to_string()];
        args.extend(files.iter().map(|f| format!("file:{}", f.display())));
        args.extend(["--verify".into(), policy.to_string()]);
        args
    };
    let add = |release: &str, policy: &str, files: &[&std::path::Path]| {
        seed.run(args(release, policy, files))
    };

    // The right identities and issuers against the trusted root ferry embeds: both pass, with no network.
    let good = write_policy(&dir, "good.toml", &policy(workflow, actions, ""));
    let report = seed.json(args("files@1", &good, &[&blob, &conda]));
    let verified = report["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 2, "{report}");
    assert!(
        verified.iter().all(|v| v["scheme"] == "keyless"),
        "{report}"
    );
    assert!(
        verified[1]["key"].as_str().unwrap().starts_with(workflow)
            && verified[1]["key"].as_str().unwrap().contains("public-good"),
        "{report}"
    );
    assert!(seed.lists("files", "1"));

    // A glob over the identity: any workflow of that repository.
    let glob = write_policy(
        &dir,
        "glob.toml",
        &policy(
            "https://github.com/prefix-dev/sigstore-example/.github/workflows/*",
            actions,
            "",
        ),
    );
    add("files@2", &glob, &[&conda]).ok();

    // Another signer, another issuer, another trusted root, a changed file, no bundle: each refused by name.
    let refused = |release: &str, policy: &str, file: &std::path::Path| {
        let e = add(release, policy, &[file])
            .expect_code(1)
            .error_lines()
            .join("\n");
        assert!(!seed.lists("files", release.split('@').nth(1).unwrap()));
        assert!(e.contains(&file.display().to_string()), "{e}");
        e
    };
    let other = write_policy(
        &dir,
        "other.toml",
        &policy("https://github.com/prefix-dev/other/*", actions, ""),
    );
    let e = refused("files@3", &other, &conda);
    assert!(
        e.contains(&format!("signed by {workflow}, not an identity matching")),
        "{e}"
    );
    let issuer = write_policy(
        &dir,
        "issuer.toml",
        &policy(workflow, "https://accounts.google.com", ""),
    );
    let e = refused("files@4", &issuer, &conda);
    assert!(e.contains("accounts.google.com"), "{e}");
    let private = other_private_root(&dir);
    let wrong_root = write_policy(
        &dir,
        "root.toml",
        &policy(
            workflow,
            actions,
            &format!("trusted_root = \"{}\"", private.display()),
        ),
    );
    let e = refused("files@5", &wrong_root, &conda);
    assert!(e.contains("trusted_root.json"), "{e}");
    let mut bytes = fs::read(&conda).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let changed = dir.join("changed.conda");
    fs::write(&changed, &bytes).unwrap();
    fs::copy(
        dir.join("signed-package-2.1.0-hb0f4dca_0.conda.sigstore"),
        dir.join("changed.conda.sigstore.json"),
    )
    .unwrap();
    refused("files@6", &good, &changed);
    let bare = dir.join("bare.conda");
    fs::copy(&conda, &bare).unwrap();
    let e = refused("files@7", &good, &bare);
    assert!(
        e.contains("no detached signature") && e.contains("bare.conda.sigstore.json"),
        "{e}"
    );
}

/// The trusted root of another private sigstore, in `dir/private/trusted_root.json`.
fn other_private_root(dir: &std::path::Path) -> std::path::PathBuf {
    sigstore::PrivateSigstore::new(&dir.join("private"), "x@ferry.invalid", "https://x.invalid")
        .trusted_root
}

#[test]
fn a_keyless_signed_image_from_a_private_sigstore_is_checked_and_crosses_with_its_signatures() {
    let imgs = images();
    let upstream = Registry::start();
    upstream.push(&imgs.layout, "v1", "team/app:v1", false);
    upstream.push(&imgs.layout, "v2", "team/app:v2", false);
    upstream.push(&imgs.layout, "v2", "team/bundled:v2", false);
    let v1 = upstream.digest("team/app:v1");
    let v2 = upstream.digest("team/app:v2");
    let v2_raw = upstream.raw_manifest("team/bundled:v2");

    let seed = Store::new();
    let work = seed.tmp_path("sigstore");
    let identity = "releases@ferry.invalid";
    let issuer = "https://issuer.ferry.invalid";
    let ours = sigstore::PrivateSigstore::new(&work, identity, issuer);
    let push = Pusher::new(&upstream.host);
    let reference = format!("{}/team/app:v1", upstream.host);
    // v1: a cosign keyless signature (certificate, chain and Rekor entry in the layer's annotations).
    let v1_payload = sigstore::payload(&reference, &v1);
    let v1_logged = ours.sign(&v1_payload, false);
    let signature_manifest =
        sigstore::push_keyless_signature(&push, "team/app", &v1, &v1_payload, &v1_logged);
    // v2: the same, but the entry's time was changed after the log signed it.
    let v2_payload = sigstore::payload(&reference, &v2);
    sigstore::push_keyless_signature(
        &push,
        "team/app",
        &v2,
        &v2_payload,
        &ours.sign(&v2_payload, true),
    );
    // bundled:v2: a sigstore bundle over the manifest, attached as a referrer (cosign's bundle format).
    let bundle_referrer = sigstore::push_bundle_referrer(
        &push,
        "team/bundled",
        (&v2, v2_raw.len()),
        &ours.sign(&v2_raw, false).bundle,
    );

    let policy = |name: &str, identity: &str, root: &str| {
        write_policy(
            &work,
            name,
            &format!(
                "[[rule]]\nmatch = \"docker://{}/team/*\"\n[[rule.keyless]]\nidentity = \"{identity}\"\nissuer = \"{issuer}\"\n{root}\n",
                upstream.host
            ),
        )
    };
    let root = format!(
        "trusted_root = \"{}\"\nignore_sct = true",
        ours.trusted_root.display()
    );
    let good = policy("good.toml", "*@ferry.invalid", &root);
    let args = |release: &str, image: &str, policy: &str| {
        vec![
            "add".to_string(),
            release.to_string(),
            upstream.url(image),
            "--insecure-registry".into(),
            upstream.host.clone(),
            "--verify".into(),
            policy.to_string(),
        ]
    };
    let add = |release: &str, image: &str, policy: &str| seed.run(args(release, image, policy));
    let refused = |image: &str, policy: &str| {
        let e = add("app@0", image, policy)
            .expect_code(1)
            .error_lines()
            .join("\n");
        assert!(!seed.lists("app", "0"));
        e
    };

    // Another identity; Sigstore's public root instead of ours; a certificate without an SCT when one is wanted;
    // a log entry whose time was changed: refused, naming the image and what failed.
    let e = refused(
        "team/app:v1",
        &policy("other.toml", "ci@ferry.invalid", &root),
    );
    assert!(
        e.contains(&v1)
            && e.contains(&format!(
                "signed by {identity}, not an identity matching ci@ferry.invalid"
            )),
        "{e}"
    );
    let e = refused("team/app:v1", &policy("public.toml", identity, ""));
    assert!(
        e.contains(&v1) && e.contains("trusted root public-good"),
        "{e}"
    );
    let e = refused(
        "team/app:v1",
        &policy(
            "sct.toml",
            identity,
            &format!("trusted_root = \"{}\"", ours.trusted_root.display()),
        ),
    );
    assert!(e.contains(&v1) && e.contains("SCT"), "{e}");
    let e = refused("team/app:v2", &good);
    assert!(e.contains(&v2) && e.to_lowercase().contains("set"), "{e}");

    // Signed by an identity the policy names, certified by our root, logged by our log: accepted.
    let mut both = args("app@1", "team/app:v1", &good);
    both.insert(3, upstream.url("team/bundled:v2"));
    let report = seed.json(both);
    let verified = report["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 2, "{report}");
    for v in verified {
        assert_eq!(v["scheme"], "keyless", "{report}");
        assert!(v["key"].as_str().unwrap().starts_with(identity), "{report}");
    }

    // Across the gap, the signature tag and the bundle referrer arrive unchanged.
    let (_site, node) = carry(&seed, "app@1");
    let sig_tag = format!("{}.sig", v1.replace(':', "-"));
    let sig_raw = raw_at(&node, &format!("team/app:{sig_tag}"));
    assert_eq!(
        format!("sha256:{}", ferry_tests::fsutil::sha256_hex(&sig_raw)),
        signature_manifest
    );
    let referrers = referrers_at(&node, "team/bundled", &v2);
    assert_eq!(
        referrers["manifests"][0]["digest"],
        bundle_referrer.as_str(),
        "{referrers}"
    );
    // openssl checks the carried certificate against our CA at the time the log recorded, as issued.
    let sig: serde_json::Value = serde_json::from_slice(&sig_raw).unwrap();
    let annotations = &sig["layers"][0]["annotations"];
    let carried = work.join("carried.pem");
    fs::write(
        &carried,
        annotations["dev.sigstore.cosign/certificate"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    run_ok(
        "openssl",
        [
            "verify",
            "-CAfile",
            work.join("fulcio.pem").to_str().unwrap(),
            "-purpose",
            "any",
            carried.to_str().unwrap(),
        ],
    );

    // And the site checks them itself, offline, with the same policy: its own registry as the source.
    let at_site = Store::new();
    let site_policy = write_policy(
        &work,
        "site.toml",
        &format!(
            "[[rule]]\nmatch = \"docker://{}/team/*\"\n[[rule.keyless]]\nidentity = \"{identity}\"\nissuer = \"{issuer}\"\n{root}\n",
            node.addr
        ),
    );
    let report = at_site.json([
        "add",
        "again@1",
        &format!("docker://{}/team/app:v1", node.addr),
        &format!("docker://{}/team/bundled:v2", node.addr),
        "--insecure-registry",
        &node.addr,
        "--verify",
        &site_policy,
    ]);
    let verified = report["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 2, "{report}");
    assert!(
        verified.iter().all(|v| v["scheme"] == "keyless"),
        "{report}"
    );
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn charts_pass_only_with_a_provenance_file_signed_by_the_policys_keyring() {
    let pkgs = ferry_tests::fixtures::pkgs();
    let s = Store::new();
    let dir = s.tmp_path("charts");
    fs::create_dir_all(&dir).unwrap();
    // web 1.2.0 and the provenance file gpg clearsigned as `helm package --sign` lays it out; gpg agrees.
    for f in ["web-1.2.0.tgz", "web-1.2.0.tgz.prov"] {
        fs::copy(pkgs.helm.join(f), dir.join(f)).unwrap();
    }
    let gnupg = gnupg_home(&s.tmp_path("gnupg"));
    gpg_in(&gnupg, &["--import", pkgs.key.to_str().unwrap()]).ok();
    gpg_in(
        &gnupg,
        &["--verify", dir.join("web-1.2.0.tgz.prov").to_str().unwrap()],
    )
    .ok();

    let policy = |name: &str, keyring: &std::path::Path| {
        write_policy(
            dir.parent().unwrap(),
            name,
            &format!(
                "[[rule]]\nmatch = \"helm:*\"\nopenpgp = [\"{}\"]\n",
                keyring.display()
            ),
        )
    };
    let good = policy("good.toml", &pkgs.key);
    let helm = format!("helm:{}", dir.display());
    let r = s.json(["add", "charts@1", &helm, "--verify", &good]);
    assert_eq!(r["verified"][0]["scheme"], "openpgp", "{r}");
    assert!(
        r["verified"][0]["artifact"]
            .as_str()
            .unwrap()
            .ends_with("web-1.2.0.tgz"),
        "{r}"
    );

    let refused = |version: &str, policy: &str| {
        let e = s
            .run([
                "add",
                &format!("charts@{version}"),
                &helm,
                "--verify",
                policy,
            ])
            .expect_code(1)
            .error_lines()
            .join("\n");
        assert!(!s.lists("charts", version));
        e
    };
    // Another keyring.
    let debian = std::path::Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    let e = refused("2", &policy("debian.toml", debian));
    assert!(
        e.contains("web-1.2.0.tgz.prov") && e.contains("debian-archive-keyring"),
        "{e}"
    );
    // Another archive under the signed name: the signature is good, the sum is not.
    fs::copy(pkgs.helm.join("web-1.0.0.tgz"), dir.join("web-1.2.0.tgz")).unwrap();
    let e = refused("3", &good);
    assert!(
        e.contains("it signs sha256:") && e.contains("but the archive is sha256:"),
        "{e}"
    );
    // A chart without a provenance file.
    fs::copy(pkgs.helm.join("web-1.2.0.tgz"), dir.join("web-1.2.0.tgz")).unwrap();
    fs::copy(pkgs.helm.join("db-0.3.1.tgz"), dir.join("db-0.3.1.tgz")).unwrap();
    let e = refused("4", &good);
    assert!(
        e.contains("db-0.3.1.tgz") && e.contains("no provenance file"),
        "{e}"
    );
}

#[test]
fn images_from_an_oci_layout_are_checked_and_bring_their_signatures_and_referrers() {
    let imgs = images();
    let upstream = Registry::start();
    upstream.push(&imgs.layout, "v1", "team/app:v1", false);
    upstream.push(&imgs.layout, "v2", "team/app:v2", false);
    let v1 = upstream.digest("team/app:v1");
    let v1_size = upstream.raw_manifest("team/app:v1").len();
    let seed = Store::new();
    let work = seed.tmp_path("keys");
    fs::create_dir_all(&work).unwrap();
    let key = Key::new(&work, "publisher");
    let push = Pusher::new(&upstream.host);
    let reference = format!("{}/team/app:v1", upstream.host);
    sigstore::push_signature(
        &push,
        &work,
        "team/app",
        &v1,
        &sigstore::payload(&reference, &v1),
        &key,
    );
    let sbom = br#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"team/app"}"#;
    let sbom_manifest = sigstore::push_sbom(&push, "team/app", (&v1, v1_size), sbom);

    // skopeo copies the image, its signature tag and its SBOM (a manifest with a subject) into a layout, as an
    // operator carrying images on disk would.
    let layout = seed.tmp_path("layout");
    let sig_tag = format!("{}.sig", v1.replace(':', "-"));
    for (from, name) in [
        ("team/app:v1".to_string(), "v1"),
        ("team/app:v2".to_string(), "v2"),
        (format!("team/app:{sig_tag}"), sig_tag.as_str()),
        (format!("team/app@{sbom_manifest}"), "sbom"),
    ] {
        run_ok(
            "skopeo",
            [
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/{from}", upstream.host),
                &format!("oci:{}:{name}", layout.display()),
            ],
        );
    }
    let policy = write_policy(
        &work,
        "oci.toml",
        &format!(
            "[[rule]]\nmatch = \"oci:*\"\ncosign = [\"{}\"]\n",
            key.public.display()
        ),
    );
    let oci = |tag: &str| format!("oci:{}{tag}", layout.display());

    // v2 carries no signature: refused, naming it and the layout; so is the whole layout, which holds v2.
    for (release, source) in [("app@0", oci(":v2")), ("app@0", oci(""))] {
        let e = seed
            .run(["add", release, &source, "--verify", &policy])
            .expect_code(1)
            .error_lines()
            .join("\n");
        assert!(
            e.contains("image v2 (")
                && e.contains("in OCI layout")
                && e.contains("no cosign signature"),
            "{e}"
        );
    }
    assert!(!seed.lists("app", "0"));

    // v1 passes, and brings its signature tag; the SBOM is no image of its own but goes with v1.
    let report = seed.json(["add", "app@1", &oci(":v1"), "--verify", &policy]);
    assert_eq!(report["verified"][0]["scheme"], "cosign", "{report}");
    let show = seed.show("app@1");
    let tags: Vec<&str> = image_entries(&show)
        .iter()
        .map(|i| i["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["v1", sig_tag.as_str()], "{show}");
    let (_site, node) = carry(&seed, "app@1");
    let repo = image_entries(&show)[0]["repository"]
        .as_str()
        .unwrap()
        .to_string();
    let referrers = referrers_at(&node, &repo, &v1);
    assert_eq!(
        referrers["manifests"][0]["digest"],
        sbom_manifest.as_str(),
        "{referrers}"
    );
    assert_eq!(
        raw_at(&node, &format!("{repo}:{sig_tag}")),
        upstream.raw_manifest(&format!("team/app:{sig_tag}"))
    );
    assert_eq!(node.stop(), Some(0));

    // The whole layout, unchecked: its three images; the SBOM is v1's referrer, not an image named "sbom".
    seed.json(["add", "all@1", &oci("")]);
    let show = seed.show("all@1");
    let mut tags: Vec<&str> = image_entries(&show)
        .iter()
        .map(|i| i["tag"].as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, [sig_tag.as_str(), "v1", "v2"], "{show}");
}
