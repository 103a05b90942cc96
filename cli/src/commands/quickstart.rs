use crate::args::{Global, QuickstartArgs, ServeArgs};
use crate::{output, progress::Bar};
use ferry_node::config::StoreConfig;
use ferry_node::ingest::{self, AddOptions, Source};
use ferry_node::{export, sample, Store};

/// The sample release every new store gets.
const SAMPLE: (&str, &str) = ("sample", "1.0");

pub fn run(g: &Global, a: QuickstartArgs) -> anyhow::Result<()> {
    let dir = super::store_dir(g)?;
    let store = if dir.join("config.toml").exists() {
        super::open_store(g)?
    } else {
        output::note(format!("creating store {}", dir.display()));
        Store::create(&dir, StoreConfig::default())?
    };
    let (name, version) = SAMPLE;
    if store.release(name, version).is_err() {
        let staging = tempdir_in(&a.out)?;
        let (layout, tree) = sample::write(&staging)?;
        let sources = [
            Source::Oci {
                dir: layout,
                tag: Some(version.to_string()),
            },
            Source::Dir(tree),
        ];
        let bar = Bar::new(!g.no_progress);
        let (_, report) = ingest::add(
            &store,
            name,
            version,
            &sources,
            &AddOptions::default(),
            &bar,
        )?;
        drop(bar);
        std::fs::remove_dir_all(&staging).ok();
        output::note(format!(
            "added {}: {} entries, {} chunks",
            report.release, report.entries, report.chunks
        ));
    }
    let release = store.release(name, version)?;
    let oci = a.out.join("oci");
    let files = a.out.join("files");
    let bar = Bar::new(!g.no_progress);
    export::oci::write(&store, &release, &oci, &bar)?;
    export::files::write(&store, &release, &files, &bar)?;
    drop(bar);
    let report = store.fsck(&ferry_node::NoProgress)?;
    output::line(format!(
        "store {} holds {} release(s); fsck {}",
        dir.display(),
        report.releases,
        if report.ok { "clean" } else { "FOUND PROBLEMS" }
    ));
    output::line(format!(
        "release {} written back out:\n  image  oci:{}:{version}   (try: skopeo inspect oci:{}:{version})\n  files  {}",
        release.id(),
        oci.display(),
        oci.display(),
        files.display()
    ));
    output::line(format!(
        "next: ferry --store {} show {}; ferry --store {} add NAME@VERSION oci:DIR:TAG",
        dir.display(),
        release.id(),
        dir.display()
    ));
    if !a.serve {
        return Ok(());
    }
    let serve = ServeArgs {
        config: None,
        listen: Some(a.listen),
        push_token_file: None,
        pull_token_file: None,
        status_token_file: None,
        max_upload: None,
        upload_timeout: None,
        p2p_listen: Vec::new(),
        peer: Vec::new(),
        no_mdns: false,
        follow: Vec::new(),
        no_prewarm: false,
    };
    super::serve::serve(store, serve, |addr| {
        output::note(format!(
            "the node serves {id} — pull it:\n  skopeo copy --src-tls-verify=false docker://{addr}/{name}:{version} \
             oci:{name}-pulled:{version}\n  podman pull --tls-verify=false {addr}/{name}:{version}\n  \
             curl http://{addr}/repos/{name}/current/\nstop it with Ctrl-C",
            id = release.id()
        ))
    })
}

fn tempdir_in(out: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let staging = out.join(".staging");
    std::fs::create_dir_all(&staging)?;
    Ok(staging)
}
