//! Seeing the node: `GET /` is a status page a person reads at a glance (releases and what is current, pins,
//! peers, syncs, disk, garbage collection); `GET /metrics` is the same in Prometheus' text exposition format
//! (version 0.0.4) for a scraper.
//!
//! Both are built from one [`Snapshot`] taken on a blocking thread. The page is plain HTML that reads whole
//! without script; a few lines of script turn timestamps into "5 min ago" and reload it every 15 seconds.

use super::Mirror;
use crate::ingest::pkgtree::html_escape as esc;
use crate::net::{NetStatus, PeerInfo};
use crate::progress::human_bytes as bytes;
use crate::store::gc::GcTotals;
use crate::store::{DiskUsage, StoreError};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// The routes, to be given the mirror as state.
pub fn routes() -> Router<Mirror> {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
}

/// One version of a name, as the page lists it.
struct Version {
    version: String,
    sequence: u64,
    created: u64,
}

/// Everything both views show, read at one moment.
struct Snapshot {
    peer_id: String,
    /// Name → versions held, newest first.
    names: BTreeMap<String, Vec<Version>>,
    current: BTreeMap<String, String>,
    pins: Vec<crate::store::pins::Pin>,
    disk: DiskUsage,
    gc: GcTotals,
    recreation: crate::store::gzip::RecreationStats,
    served_bytes: u64,
    net: Option<NetStatus>,
    /// Name → releases peers announced newer than the newest held (names held or followed).
    lag: BTreeMap<String, u64>,
    /// What crossed the gap, and its layer-level size.
    delivered: crate::store::delivered::Deliveries,
}

fn snapshot(m: &Mirror) -> Result<Snapshot, StoreError> {
    let store = m.store();
    let mut names: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for r in store.releases()? {
        let m = r.manifest;
        names.entry(m.name).or_default().push(Version {
            version: m.version,
            sequence: m.sequence,
            created: m.created,
        });
    }
    for v in names.values_mut() {
        v.sort_by_key(|v| std::cmp::Reverse(v.sequence));
    }
    let net = m.network().map(|n| n.status());
    let mut lag = BTreeMap::new();
    if let Some(net) = &net {
        let mut watched: Vec<&String> = names.keys().chain(net.follows.iter()).collect();
        watched.sort();
        watched.dedup();
        for name in watched {
            let newest = names
                .get(name)
                .and_then(|v| v.first())
                .map_or(0, |v| v.sequence);
            let mut ahead: Vec<&str> = net
                .peers
                .values()
                .flat_map(|p| &p.releases)
                .filter(|a| a.id.split_once('@').is_some_and(|(n, _)| n == name))
                .filter(|a| a.sequence > newest)
                .map(|a| a.id.as_str())
                .collect();
            ahead.sort_unstable();
            ahead.dedup();
            lag.insert(name.clone(), ahead.len() as u64);
        }
    }
    Ok(Snapshot {
        peer_id: crate::membership::peer_id(store.root())
            .map(|p| p.to_string())
            .unwrap_or_default(),
        current: crate::retention::current(store)?,
        pins: store.pins()?,
        disk: store.disk_usage(),
        gc: store.gc_totals(),
        recreation: store.recreation_stats(),
        served_bytes: m.served_bytes(),
        delivered: store.deliveries()?,
        names,
        net,
        lag,
    })
}

async fn taken(m: Mirror) -> Result<Snapshot, Response> {
    match tokio::task::spawn_blocking(move || snapshot(&m)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the node's status");
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the node's log",
            )
                .into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the node's status");
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the node's log",
            )
                .into_response())
        }
    }
}

async fn metrics(State(m): State<Mirror>) -> Response {
    let s = match taken(m).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut r = encode_metrics(&s).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Prometheus text exposition, one family at a time.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A per-peer counter: name, help, and the field it reads.
/// A peer's clock offset as a table cell, marked bad past `ferry doctor`'s bound.
fn clock_cell(offset_ms: Option<i64>) -> String {
    match offset_ms {
        None => "<td class=num></td>".into(),
        Some(ms) => format!(
            "<td class=\"num{}\">{:+.1} s</td>",
            if ms.unsigned_abs() > crate::doctor::MAX_SKEW_MS {
                " bad"
            } else {
                ""
            },
            ms as f64 / 1000.0
        ),
    }
}

type PerPeer = (&'static str, &'static str, fn(&PeerInfo) -> u64);

fn encode_metrics(s: &Snapshot) -> String {
    let mut e = Exposition(String::new());
    e.one(
        "ferry_served_bytes_total",
        "counter",
        "Bytes of blobs, manifests and repository files sent to HTTP clients since the node started.",
        s.served_bytes,
    );
    e.family(
        "ferry_store_bytes",
        "gauge",
        "Bytes on disk by part of the store.",
    );
    for (part, v) in [
        ("packs", s.disk.packs),
        ("index", s.disk.index),
        ("cache", s.disk.cache),
        ("uploads", s.disk.uploads),
    ] {
        e.sample("ferry_store_bytes", &[("part", part)], v);
    }
    e.one(
        "ferry_store_releases",
        "gauge",
        "Releases held.",
        s.names.values().map(Vec::len).sum::<usize>(),
    );
    e.family(
        "ferry_release_versions",
        "gauge",
        "Versions held of each release name.",
    );
    for (name, versions) in &s.names {
        e.sample("ferry_release_versions", &[("name", name)], versions.len());
    }
    e.one("ferry_pins", "gauge", "Pins in force.", s.pins.len());
    e.one(
        "ferry_gc_runs_total",
        "counter",
        "Garbage collections run since the node started (dry runs not counted).",
        s.gc.runs,
    );
    e.one(
        "ferry_gc_reclaimed_bytes_total",
        "counter",
        "Disk bytes garbage collection took back since the node started.",
        s.gc.reclaimed_bytes,
    );
    e.one(
        "ferry_gc_releases_removed_total",
        "counter",
        "Releases garbage collection removed since the node started.",
        s.gc.releases_removed,
    );
    e.one(
        "ferry_gc_last_run_timestamp_seconds",
        "gauge",
        "When the last garbage collection ended (0: none since the node started).",
        s.gc.last_at,
    );
    let r = &s.recreation;
    e.family(
        "ferry_recreations_total",
        "counter",
        "Gzip re-creations started since the node started, for a client or in the background.",
    );
    e.sample(
        "ferry_recreations_total",
        &[("kind", "on_demand")],
        r.on_demand,
    );
    e.sample(
        "ferry_recreations_total",
        &[("kind", "background")],
        r.background,
    );
    e.one(
        "ferry_recreations_streamed_total",
        "counter",
        "Reads of a gzip blob served while it was being re-created.",
        r.streamed,
    );
    e.one(
        "ferry_recreations_failed_total",
        "counter",
        "Gzip re-creations that failed.",
        r.failed,
    );
    e.one(
        "ferry_recreations_running",
        "gauge",
        "Gzip re-creations running now.",
        r.running,
    );
    e.one(
        "ferry_recreations_waiting",
        "gauge",
        "Gzip re-creations waiting for a place.",
        r.waiting,
    );
    let Some(net) = &s.net else {
        return e.0;
    };
    e.one(
        "ferry_peers_known",
        "gauge",
        "Peers of the site this node knows of.",
        net.peers.len(),
    );
    e.one(
        "ferry_peers_connected",
        "gauge",
        "Peers with a control-plane connection open.",
        net.peers.values().filter(|p| p.connected).count(),
    );
    e.one(
        "ferry_syncs_running",
        "gauge",
        "Network syncs in progress.",
        net.syncs.iter().filter(|s| !is_finished(&s.state)).count(),
    );
    let per_peer: [PerPeer; 3] = [
        (
            "ferry_sync_chunks_fetched_total",
            "Chunks fetched from each peer by syncs (verified and stored) since the node started.",
            |p| p.received_chunks,
        ),
        (
            "ferry_sync_bytes_fetched_total",
            "Chunk bytes fetched from each peer by syncs since the node started.",
            |p| p.received_bytes,
        ),
        (
            "ferry_sync_bytes_sent_total",
            "Chunk bytes sent to each peer since the node started.",
            |p| p.sent_bytes,
        ),
    ];
    for (name, help, field) in per_peer {
        e.family(name, "counter", help);
        for (peer, p) in &net.peers {
            e.sample(name, &[("peer", peer)], field(p));
        }
    }
    e.family(
        "ferry_peer_clock_offset_seconds",
        "gauge",
        "Each peer's wall clock less this node's, measured from its hello (peers that said).",
    );
    for (peer, p) in &net.peers {
        if let Some(ms) = p.clock_offset_ms {
            e.sample(
                "ferry_peer_clock_offset_seconds",
                &[("peer", peer)],
                ms as f64 / 1000.0,
            );
        }
    }
    e.family(
        "ferry_sync_lag_releases",
        "gauge",
        "Releases of each name held or followed that peers announce and that are newer than the newest held.",
    );
    for (name, n) in &s.lag {
        e.sample("ferry_sync_lag_releases", &[("name", name)], n);
    }
    e.0
}

fn is_finished(state: &str) -> bool {
    state == "done" || state.starts_with("failed")
}

async fn page(State(m): State<Mirror>) -> Response {
    let s = match taken(m).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut r = render(&s).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A timestamp the script makes relative; without script, the date itself.
fn when(secs: u64) -> String {
    if secs == 0 {
        return "never".into();
    }
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    format!(r#"<time data-epoch="{secs}">{date}</time>"#)
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{padding:.2em .8em .2em 0;text-align:left;vertical-align:top}\
th{font-weight:600;color:#555}.num{text-align:right}.cur{font-weight:600}.bad{color:#b00}.ok{color:#070}\
.mono{font-family:ui-monospace,monospace;font-size:.9em}\
.wide{overflow-x:auto;max-width:100%}.big{font-size:1.25em;margin:.4em 0}.big b{color:#064}\
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 .8em;vertical-align:middle}\
progress{width:8em;vertical-align:middle}svg{width:100%;max-width:760px;height:auto;display:block;margin:.6em 0}\
@media (max-width:600px){body{margin:.6em;font-size:15px}td,th{padding:.2em .5em .2em 0}\
.hide-narrow{display:none}h1 .mono{display:block;font-size:.7em;word-break:break-all}}";

const SCRIPT: &str = "function ago(s){var d=Math.round(Date.now()/1000-s);\
if(d<60)return d+' s ago';if(d<3600)return Math.round(d/60)+' min ago';\
if(d<86400)return Math.round(d/3600)+' h ago';return Math.round(d/86400)+' days ago';}\
document.querySelectorAll('time[data-epoch]').forEach(function(t){\
t.title=t.textContent;t.textContent=ago(+t.dataset.epoch);});\
document.getElementById('updated').textContent='updated '+new Date().toLocaleTimeString();\
setTimeout(function(){location.reload();},15000);";

/// Colours of the charts: layer-level bytes, shipped bytes, and the parts of the disk.
const LAYER: &str = "#bbb";
const SHIPPED: &str = "#2a7";
const PARTS: [&str; 4] = ["#2a7", "#47b", "#d93", "#a5a"];

/// "What crossed the gap and what it saved": the totals (with the figures as data attributes, for scripts and
/// tests), a chart of each delivery's shipped and layer-level bytes, oldest left, and the deliveries as a table.
fn gap_section(h: &mut String, d: &crate::store::delivered::Deliveries) {
    h.push_str("<h2>Across the gap</h2>");
    if d.deliveries.is_empty() {
        h.push_str("<p id=saved data-shipped=0 data-layer=0>Nothing has arrived by bundle or sync yet.</p>");
        return;
    }
    let saved = d.layer_bytes.saturating_sub(d.shipped_bytes);
    let pct = if d.layer_bytes == 0 {
        0.0
    } else {
        100.0 * saved as f64 / d.layer_bytes as f64
    };
    let _ = write!(
        h,
        "<div id=saved data-shipped=\"{}\" data-layer=\"{}\" data-saved=\"{saved}\">\
         <p class=big><b>{}</b> crossed the gap for <b>{}</b> of layers: <b>{pct:.0}%</b> saved \
         ({} deliveries).</p></div>",
        d.shipped_bytes,
        d.layer_bytes,
        bytes(d.shipped_bytes),
        bytes(d.layer_bytes),
        d.deliveries.len(),
    );
    // The chart: the last 40 deliveries, two bars each, scaled to the largest.
    let shown: Vec<_> = d.deliveries.iter().rev().take(40).rev().collect();
    let top = shown
        .iter()
        .map(|x| x.layer_bytes.max(x.shipped_bytes))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (w, hgt, slot) = (640.0, 160.0, 640.0 / shown.len().max(8) as f64);
    let _ = write!(
        h,
        "<svg id=gap-chart viewBox=\"0 0 {w} {}\" role=img aria-label=\"bytes shipped and layer-level bytes per delivery\">",
        hgt + 18.0
    );
    for (i, x) in shown.iter().enumerate() {
        let x0 = i as f64 * slot + slot * 0.1;
        let bw = slot * 0.38;
        for (k, (v, colour)) in [(x.layer_bytes, LAYER), (x.shipped_bytes, SHIPPED)]
            .into_iter()
            .enumerate()
        {
            let bh = (v as f64 / top * hgt).max(if v > 0 { 1.0 } else { 0.0 });
            let _ = write!(
                h,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{}: {}</title></rect>",
                x0 + k as f64 * bw,
                hgt - bh,
                esc(&x.releases.join(", ")),
                if k == 0 {
                    format!("{} layer-level", bytes(v))
                } else {
                    format!("{} shipped", bytes(v))
                }
            );
        }
    }
    let _ = write!(
        h,
        "<line x1=0 y1=\"{hgt}\" x2=\"{w}\" y2=\"{hgt}\" stroke=\"#888\"/>\
         <text x=0 y=\"{}\" font-size=11 fill=\"#555\">oldest</text>\
         <text x=\"{w}\" y=\"{}\" font-size=11 fill=\"#555\" text-anchor=end>newest</text></svg>\
         <p class=legend><span style=\"background:{LAYER}\"></span>layer-level (what a registry mirror would ship)\
         <span style=\"background:{SHIPPED}\"></span>shipped</p>",
        hgt + 14.0,
        hgt + 14.0,
    );
    h.push_str(
        "<div class=wide><table id=deliveries><tr><th>when</th><th>how</th><th>releases</th>\
         <th class=num>shipped</th><th class=num>layer-level</th><th class=num>saved</th></tr>",
    );
    for x in d.deliveries.iter().rev().take(50) {
        let saved = x.layer_bytes.saturating_sub(x.shipped_bytes);
        let _ = write!(
            h,
            "<tr data-shipped=\"{}\" data-layer=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td>\
             <td class=num>{}</td><td class=num>{}</td></tr>",
            x.shipped_bytes,
            x.layer_bytes,
            when(x.time),
            x.via,
            esc(&x.releases.join(", ")),
            bytes(x.shipped_bytes),
            bytes(x.layer_bytes),
            if x.layer_bytes == 0 {
                "—".to_string()
            } else {
                format!("{:.0}%", 100.0 * saved as f64 / x.layer_bytes as f64)
            },
        );
    }
    h.push_str("</table></div>");
}

/// The disk's parts as one stacked bar, with a legend.
fn disk_bar(h: &mut String, d: &DiskUsage) {
    let parts = [
        ("packs", d.packs),
        ("index", d.index),
        ("cache", d.cache),
        ("uploads", d.uploads),
    ];
    let total = parts.iter().map(|p| p.1).sum::<u64>().max(1) as f64;
    h.push_str(
        "<svg id=disk-chart viewBox=\"0 0 640 22\" role=img aria-label=\"disk use by part\">",
    );
    let mut x = 0.0;
    for ((name, v), colour) in parts.iter().zip(PARTS) {
        let w = *v as f64 / total * 640.0;
        let _ = write!(
            h,
            "<rect x=\"{x:.1}\" y=0 width=\"{w:.1}\" height=22 fill=\"{colour}\"><title>{name}: {}</title></rect>",
            bytes(*v)
        );
        x += w;
    }
    h.push_str("</svg><p class=legend>");
    for ((name, v), colour) in parts.iter().zip(PARTS) {
        let _ = write!(
            h,
            "<span style=\"background:{colour}\"></span>{name} {}",
            bytes(*v)
        );
    }
    h.push_str("</p>");
}

fn render(s: &Snapshot) -> String {
    let mut h = String::new();
    let releases: usize = s.names.values().map(Vec::len).sum();
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>ferry node</title>\
         <meta name=viewport content='width=device-width,initial-scale=1'><style>{STYLE}</style></head><body>\
         <h1>ferry node <span class=mono>{}</span></h1>\
         <p id=summary>{releases} releases of {} names, {} pinned; store {}; served {} since start. \
         <span id=updated></span></p>",
        esc(&s.peer_id),
        s.names.len(),
        s.pins.len(),
        bytes(s.disk.total),
        bytes(s.served_bytes),
    );

    gap_section(&mut h, &s.delivered);

    h.push_str("<h2>Releases</h2>");
    if s.names.is_empty() {
        h.push_str("<p>No releases yet.</p>");
    } else {
        h.push_str(
            "<div class=wide><table id=releases><tr><th>name</th><th>current</th><th>pin</th><th>versions held</th>\
             <th>newest published</th></tr>",
        );
        for (name, versions) in &s.names {
            let current = s.current.get(name).map_or("", String::as_str);
            let pin = s.pins.iter().find(|p| &p.name == name);
            let pin_text = match pin {
                Some(p) => format!(
                    "{}{} {}",
                    esc(p.version.as_deref().unwrap_or("")),
                    if p.site { " (site)" } else { "" },
                    when(p.at)
                ),
                None => "—".into(),
            };
            let held: Vec<String> = versions
                .iter()
                .map(|v| {
                    if v.version == current {
                        format!("<span class=cur>{}</span>", esc(&v.version))
                    } else {
                        esc(&v.version)
                    }
                })
                .collect();
            let _ = write!(
                h,
                "<tr data-name=\"{n}\"><td>{n}</td><td class=cur>{c}</td><td>{pin_text}</td><td>{}</td><td>{}</td></tr>",
                held.join(", "),
                when(versions.first().map_or(0, |v| v.created)),
                n = esc(name),
                c = esc(current),
            );
        }
        h.push_str("</table></div>");
    }
    // Pins for versions not held (a site pin that arrived first).
    let waiting: Vec<_> = s
        .pins
        .iter()
        .filter(|p| s.current.get(&p.name) != p.version.as_ref())
        .collect();
    for p in waiting {
        let _ = write!(
            h,
            "<p class=bad>{} is pinned to {}, which this node does not hold yet: it serves {} meanwhile.</p>",
            esc(&p.name),
            esc(p.version.as_deref().unwrap_or("")),
            esc(s.current.get(&p.name).map_or("nothing", String::as_str)),
        );
    }

    h.push_str("<h2>Network</h2>");
    match &s.net {
        None => h.push_str("<p>Network sync is off (no p2p listen address).</p>"),
        Some(net) => {
            let connected = net.peers.values().filter(|p| p.connected).count();
            let _ = write!(
                h,
                "<p>{connected} of {} peers connected; following {}.</p>",
                net.peers.len(),
                if net.follows.is_empty() {
                    "nothing".to_string()
                } else {
                    esc(&net.follows.join(", "))
                }
            );
            let behind: Vec<String> = s
                .lag
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(name, n)| format!("{} ({n})", esc(name)))
                .collect();
            if !behind.is_empty() {
                let _ = write!(
                    h,
                    "<p class=bad id=lag>Behind the site: peers hold newer releases of {}.</p>",
                    behind.join(", ")
                );
            }
            if !net.peers.is_empty() {
                h.push_str(
                    "<div class=wide><table id=peers><tr><th>peer</th><th>state</th><th>address</th><th>releases</th>\
                     <th class=num>fetched from</th><th class=num>sent to</th><th class=num>clock</th></tr>",
                );
                for (id, p) in &net.peers {
                    let state = match (&p.dropped, p.connected) {
                        (Some(why), _) => format!("<span class=bad>dropped: {}</span>", esc(why)),
                        (None, true) => "<span class=ok>connected</span>".into(),
                        (None, false) => "away".into(),
                    };
                    let _ = write!(
                        h,
                        "<tr><td class=mono>{}</td><td>{state}</td><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td>{}</tr>",
                        esc(id),
                        p.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                        p.releases.len(),
                        bytes(p.received_bytes),
                        bytes(p.sent_bytes),
                        clock_cell(p.clock_offset_ms),
                    );
                }
                h.push_str("</table></div>");
            }
            if !net.syncs.is_empty() {
                h.push_str(
                    "<div class=wide><table id=syncs><tr><th>sync</th><th>state</th><th>progress</th>\
                     <th class=num>chunks</th><th class=num>bytes</th><th class=num>seconds</th></tr>",
                );
                for p in &net.syncs {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td class=\"{}\">{}</td><td><progress max=\"{}\" value=\"{}\"></progress></td>\
                         <td class=num>{} / {}</td><td class=num>{}</td><td class=num>{:.0}</td></tr>",
                        esc(&p.release),
                        if p.state.starts_with("failed") { "bad" } else { "" },
                        esc(&p.state),
                        p.chunks_total.max(1),
                        p.chunks_done,
                        p.chunks_done,
                        p.chunks_total,
                        bytes(p.bytes_done),
                        p.seconds,
                    );
                }
                h.push_str("</table></div>");
            }
            if !net.refused.is_empty() {
                h.push_str(
                    "<h2>Recent refusals</h2><div class=wide><table id=refused><tr><th>peer</th><th>from</th>\
                     <th>plane</th><th>why</th></tr>",
                );
                for r in net.refused.iter().rev() {
                    let _ = write!(
                        h,
                        "<tr><td class=mono>{}</td><td>{}</td><td>{}</td><td class=bad>{}</td></tr>",
                        esc(&r.peer),
                        esc(&r.addr),
                        r.plane,
                        esc(&r.why)
                    );
                }
                h.push_str("</table></div>");
            }
        }
    }

    h.push_str("<h2>Disk</h2>");
    disk_bar(&mut h, &s.disk);
    let _ = write!(
        h,
        "<table id=disk><tr><th>packs</th><td class=num>{}</td></tr><tr><th>index</th><td class=num>{}</td></tr>\
         <tr><th>cache</th><td class=num>{}</td></tr><tr><th>uploads</th><td class=num>{}</td></tr>\
         <tr><th>total</th><td class=num>{}</td></tr></table>\
         <p id=gc>Garbage collection: {} since start, {} reclaimed, {} releases removed; last {}.</p>",
        bytes(s.disk.packs),
        bytes(s.disk.index),
        bytes(s.disk.cache),
        bytes(s.disk.uploads),
        bytes(s.disk.total),
        match s.gc.runs {
            1 => "1 run".to_string(),
            n => format!("{n} runs"),
        },
        bytes(s.gc.reclaimed_bytes),
        s.gc.releases_removed,
        when(s.gc.last_at),
    );
    let _ = write!(
        h,
        "<p><a href=/metrics>metrics</a> · <a href=/_ferry/repos>repositories</a> · \
         <a href=/_ferry/images>images</a></p><script>{SCRIPT}</script></body></html>"
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_markup_are_escaped() {
        let mut e = Exposition(String::new());
        e.sample("m", &[("a", "x\"y\\z\nw")], 1);
        assert_eq!(e.0, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }
}
