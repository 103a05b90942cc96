//! Ferry's integration tests: the real `ferry` binary (`target/debug/ferry`) against real clients (skopeo,
//! umoci, docker-registry) and real data (Debian packages turned into OCI images). Support code lives in the
//! `ferry_tests` library (`tests/src/`); fixtures are built by `tools/fixtures/*.sh`.
//!
//! - `store`: init, keys, immutability of releases.
//! - `admin`: commands through a running node's admin socket; only the store's owner gets in.
//! - `oci`: OCI layout ingest, round trip, reference names, dedup between versions, platform selection.
//! - `docker_archive`: `docker save`-style tarballs.
//! - `registry`: `docker://` pulls from a real registry, multi-platform indexes, registry errors.
//! - `files`: `file:` and `dir:` sources, a sparse disk image.
//! - `gzip`: gzip layers and tarballs stored as raw bytes plus re-creation data come back exact through `get`,
//!   the registry (cold and warm), a bundle and fsck; a damaged cached copy is caught; a broken gzip is kept.
//! - `zip`: wheels and jars stored as skeleton, members' contents and re-creation data.
//! - `deb`: `.deb` packages and `.xz` files stored as skeleton, raw contents and liblzma parameters, through
//!   `get`, a bundle, a site's apt mirror and fsck; a rebuilt package crosses as its changed file.
//! - `rpm`: `.rpm` packages (zstd and xz payloads, as distributions build them) stored as lead and headers,
//!   raw cpio and parameters, through `get`, a bundle, a site's yum mirror read by dnf, and fsck.
//! - `bad_input`: corrupt or missing input is refused and leaves the store clean.
//! - `bundle`: sneakernet bundles — deltas by base, have-file and site ledger; volumes; damaged, missing,
//!   untrusted, tampered and hostile bundles; kill -9 during import.
//! - `serve`: `ferry serve` as an OCI registry, pulled by skopeo and podman; ranges, paging, errors.
//! - `repos`: `apt:` ingest of a real signed repository (directory and HTTP) served to `apt-get` under
//!   `/repos/…`; static trees — percent-decoding, redirects, validators, ranges, hostile paths, `/_ferry/repos`.
//! - `hardening`: what a stranger can make a node hold is bounded — half-open and idle connections dropped,
//!   connections capped in all and per client (503), deep request paths answered in linear time, a loop of
//!   errors from one address slowed, ranges past 64 bits, a gzip bomb pushed and added in bounded memory.
//! - `hostile`: a peer on the allow-list that breaks the protocol (`ferry-hostile`: stalled, garbage, truncated,
//!   undecodable and oversized requests; a flood of requests and connections; a gossip flood) is answered, dropped
//!   on both planes after ten violations and named by `ferry status`, while a site syncs from the same node.
//! - `push`: pushing into `ferry serve` with skopeo and podman, uploads and manifests by hand, tokens, bad
//!   input; pushed images named into a release with `pushed:`.
//! - `uploads_bounds`: what pushers can make a node hold is bounded — the upload spool capped, a free-space
//!   reserve kept, idle uploads evicted for new pushers (skopeo pushes past them), a stalled chunk holding up
//!   neither status, cancel nor a retry, and given up on within the upload timeout.
//! - `netns`: the several-hosts harness — namespaces on a bridge reach each other, a cut heals, the delay relay
//!   delays UDP and TCP round trips and delivers exact bytes, a panicking test leaves no namespace or process,
//!   stale namespaces are removed.
//! - `supply`: `add --verify` against a policy (cosign-signed images, keyless sigstore signatures of images
//!   and files, signed apt repositories, Helm provenance, files with OpenPGP and minisign signatures), and
//!   signatures and SBOM referrers carried to a site's registry from registries and OCI layouts.
//! - `service`: Ferry as a system service — the Debian package (contents, installed under `dpkg --root`, its
//!   units verified by systemd-analyze, completions in bash, man pages by man), the OCI image built from it run
//!   by podman and ingested by Ferry, and `serve` telling systemd it is ready and reloading on SIGHUP.
//! - `sync`: network sync between nodes — on loopback (the update carries what a bundle would; untrusted
//!   releases refused; followers take new versions) and as several hosts in namespaces (three sites sharing what
//!   the seed sends, found by mDNS; a killed and a corrupt peer routed around; a partition that heals; a sync
//!   killed midway resumes without refetching; a holder out of sight found by Kademlia; a node outside the
//!   allow-list refused until allowed).
//! - `peers`: node identity (`ferry id`) and the site's allow-list (`ferry peers`).
//! - `delta`: a changed package crosses as a delta against the version the site holds, in bundles and by sync,
//!   and rebuilds exactly; a missing base is refused by name (bundles) or routed around (sync).
//! - `diff`: `ferry diff` names what changed and predicts the delta bundle's size.
//! - `pins`: `ferry pin` moves what a running node serves as current (`latest` for skopeo, `/repos/NAME/current/`).
//! - `gc`: retention keeps pins and the newest versions; `ferry gc` on a running node under 64 concurrent pulls
//!   (all exact), then fsck clean and the store the size of a fresh one holding only what was kept.
//! - `status`: the status page in headless Chromium and `/metrics` through Prometheus' parser follow pins, pulls
//!   and gc; (in `sync`) per-peer chunk counts and sync lag.
//! - `disk_full`: `add`, `import`, `sync`, a push and `gc` on a store whose small tmpfs is full fail saying so
//!   and naming the store, lose nothing held, and complete once space is freed (fsck clean).
//! - `crash`: fsck finds damage; kill -9 during add leaves a consistent, resumable store.
//! - `pkgs`: `pypi:`, `helm:` and `yum:` sources — real distributions, charts and rpm repositories as static
//!   trees with generated indexes; served under `/repos/` to pip and dnf (with `repo_gpgcheck`), helm's
//!   index checked against its charts over HTTP; incomplete or altered repositories refused.

mod admin;
mod bad_input;
mod bundle;
mod crash;
mod deb;
mod delta;
mod diff;
mod disk_full;
mod docker_archive;
mod files;
mod gc;
mod gzip;
mod hardening;
mod hostile;
mod netns;
mod oci;
mod partial;
mod peers;
mod pins;
mod pkgs;
mod push;
mod registry;
mod repos;
mod rpm;
mod serve;
mod service;
mod status;
mod store;
mod supply;
mod sync;
mod token_auth;
mod uploads_bounds;
mod zip;
mod zstd;
