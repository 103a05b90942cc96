//! A hostile peer on the allow-list (issue 21, item 6): a valid node key that breaks the protocol on both planes is
//! answered, counted, dropped and named, while an honest site keeps syncing from the same node.
//!
//! The misbehaviour comes from `ferry-hostile` (`tests/src/bin/`), which speaks the real protocol with the node's
//! own TLS and frame code; a peer off the allow-list is refused at the handshake (`sync`'s tests).

use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_tests::cmd::{run_timeout, Output};
use ferry_tests::ferry::{num, Store};
use serde_json::Value;

use crate::sync::{
    allow_all, content_hashes, fsck_clean, peer_id, seed_and_site, seed_with_release, status, sync,
    trust, wait_for,
};

/// `ferry-hostile --key-store STORE --node P2P --data ADDR ARGS…` on a thread; its output when it is done.
fn hostile(with: &Store, node: &[&str; 2], args: &[&str]) -> JoinHandle<Output> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry-hostile"));
    c.arg("--key-store")
        .arg(&with.path)
        .args(["--node", node[0], "--data", node[1]])
        .args(args);
    std::thread::spawn(move || run_timeout(&mut c, Duration::from_secs(120)))
}

/// The JSON lines a `ferry-hostile` printed.
fn lines(out: JoinHandle<Output>) -> Vec<Value> {
    let out = out.join().expect("the hostile thread").ok();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out}")))
        .collect()
}

/// What the node answered to the streams of `kind`.
fn answers<'a>(report: &'a [Value], kind: &str) -> Vec<&'a str> {
    report
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| l["answer"].as_str().unwrap())
        .collect()
}

#[test]
fn a_hostile_peer_on_the_allow_list_is_dropped_and_named_while_a_site_syncs() {
    let seed = seed_with_release(8);
    let site = Store::new();
    trust(&site, &seed);
    allow_all(&[&seed, &site]);
    // Three keys the seed allows, each misbehaving its own way.
    let (bad, flooder, gossiper) = (Store::new(), Store::new(), Store::new());
    let ids: Vec<String> = [&bad, &flooder, &gossiper]
        .iter()
        .map(|h| peer_id(h))
        .collect();
    for id in &ids {
        seed.run(["peers", "allow", id]).ok();
    }
    let (bad_id, flooder_id, gossiper_id) = (&ids[0], &ids[1], &ids[2]);
    let (seed_node, _site_node) = seed_and_site(&seed, &site);
    let p2p = seed_node.p2p.clone().expect("the seed's p2p address");
    let data = status(&seed)["network"]["data_addr"]
        .as_str()
        .expect("the seed's data address")
        .to_string();
    let node = [p2p.as_str(), data.as_str()];

    let start = Instant::now();
    let malformed = hostile(&bad, &node, &["malformed"]);
    let flood = hostile(&flooder, &node, &["flood", "3000"]);
    let gossip = hostile(&gossiper, &node, &["gossip", "1000"]);
    // The attack is under way (the gossip flood is the quickest to be dropped): the site syncs meanwhile.
    wait_for(
        "the gossip flood to be dropped",
        Duration::from_secs(30),
        || !status(&seed)["network"]["peers"][gossiper_id]["dropped"].is_null(),
    );
    let report = sync(&site, "rel@1", &[]);
    let synced = start.elapsed();
    assert_eq!(num(&report, "payload_bytes"), 16 << 20, "{report}");
    assert_eq!(
        report["dropped"].as_array().map_or(0, Vec::len),
        0,
        "{report}"
    );

    // Each malformed stream is refused, naming what was wrong with it.
    let malformed = lines(malformed);
    let one_of = |kind: &str, n: usize, needle: &str| {
        let a = answers(&malformed, kind);
        assert_eq!(a.len(), n, "{kind}: {malformed:?}");
        assert!(a.iter().all(|a| a.contains(needle)), "{kind}: {a:?}");
    };
    one_of(
        "stalled",
        2,
        "nothing more for 10 s, 2 bytes into a request",
    );
    one_of(
        "garbage",
        2,
        "a request frame of 542393671 bytes, past the 4 MiB limit",
    );
    one_of(
        "truncated",
        2,
        "the stream ended 10 bytes into a request frame of 1000 bytes",
    );
    one_of("undecodable", 2, "that is no sync request");
    let oversized = answers(&malformed, "oversized");
    assert!(
        oversized[0].contains("a request frame of 4294967295 bytes, past the 4 MiB limit"),
        "{oversized:?}"
    );
    // The tenth violation spends the budget: the connection is closed saying why, and a new one is refused.
    // Which violation the node counts last depends on when each stream's end reaches it (a truncated frame is
    // noticed only when its stream ends), so the message may name any of them.
    let violations = [
        "a request frame of 4294967295 bytes, past the 4 MiB limit",
        "the stream ended 10 bytes into a request frame of 1000 bytes",
        "a request frame of 542393671 bytes, past the 4 MiB limit",
        "that is no sync request",
        "nothing more for 10 s, 2 bytes into a request",
    ];
    // The undecodable one is named with its frame's length first ("a request frame of 64 bytes that is no
    // sync request: …"), so each is looked for anywhere after "last: ".
    let last_of = |why: &str| {
        why.split_once("last: ")
            .is_some_and(|(_, last)| violations.iter().any(|v| last.contains(v)))
    };
    let closed = answers(&malformed, "connection")[0];
    assert!(
        closed.starts_with("closed with code 3: 10 protocol violations") && last_of(closed),
        "{closed}"
    );
    let again = answers(&malformed, "reconnect")[0];
    assert!(
        again.starts_with("closed with code 3: dropped for protocol violations; refused for"),
        "{again}"
    );

    // A flood of well-formed requests is answered, paced (256 a second after a burst of 512), not dropped; past
    // 4 connections at once from that peer, more are refused.
    let flood = lines(flood).remove(0);
    assert_eq!(num(&flood, "refused"), 3000, "{flood}");
    assert!(
        flood["seconds"].as_f64().unwrap() > 8.0,
        "not paced: {flood}"
    );
    assert_eq!(num(&flood, "extra_connections"), 3, "{flood}");
    let extra = flood["extra_refused"].as_array().unwrap();
    assert_eq!(extra.len(), 3, "{flood}");
    assert!(
        extra.iter().all(|e| e
            .as_str()
            .unwrap()
            .contains("4 connections from this peer already")),
        "{flood}"
    );

    // Gossip past the rate is a violation too: the control plane drops the peer and refuses it when it dials again.
    let gossip = lines(gossip).remove(0);
    assert!(num(&gossip, "published") > 200, "{gossip}");
    assert_eq!(gossip["disconnected"], true, "{gossip}");
    assert!(gossip["redial"] != "accepted", "{gossip}");
    eprintln!(
        "the site synced {synced:?} after the attack began, which took {:?}",
        start.elapsed()
    );

    // `ferry status` names the dropped peers and why; the flooder was served, not dropped.
    let net = &status(&seed)["network"];
    let peer = |id: &str| net["peers"][id].clone();
    let dropped = peer(bad_id)["dropped"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The same words the connection was closed with.
    assert!(
        dropped.starts_with("10 protocol violations")
            && last_of(&dropped)
            && closed.ends_with(&dropped[dropped.find("(last:").unwrap()..]),
        "{dropped} / {closed}: {net}"
    );
    assert!(num(&peer(bad_id), "refused_for_secs") > 0, "{net}");
    assert!(
        peer(gossiper_id)["dropped"]
            .as_str()
            .is_some_and(|d| d.contains("gossip past 10 messages a second")),
        "{net}"
    );
    assert!(peer(flooder_id)["dropped"].is_null(), "{net}");
    let refused = net["refused"].as_array().unwrap();
    for (id, plane) in [(bad_id, "data"), (gossiper_id, "control")] {
        assert!(
            refused.iter().any(|r| r["peer"] == id.as_str()
                && r["plane"] == plane
                && r["why"]
                    .as_str()
                    .unwrap()
                    .starts_with("dropped for protocol violations")),
            "{id} on the {plane} plane: {net}"
        );
    }
    let text = seed.run(["status"]).ok().stdout;
    assert!(
        text.lines()
            .any(|l| l.contains(bad_id.as_str()) && l.contains("DROPPED: 10 protocol violations")),
        "{text}"
    );

    // The site holds the release exactly, and the node still serves it: the update comes through too.
    assert_eq!(
        content_hashes(&site, "rel@1"),
        content_hashes(&seed, "rel@1")
    );
    let second = sync(&site, "rel@2", &[]);
    assert_eq!(second["already_held"], false, "{second}");
    assert_eq!(
        content_hashes(&site, "rel@2"),
        content_hashes(&seed, "rel@2")
    );
    fsck_clean(&site);
}
