//! Node identity and site membership: `ferry id`, `ferry peers allow|deny|ls`, directly and through a running node.

use ferry_tests::ferry::Store;
use ferry_tests::node::Node;

#[test]
fn each_store_has_its_own_stable_peer_id() {
    let a = Store::new();
    let b = Store::new();
    let id_a = a.run(["id"]).ok().stdout.trim().to_string();
    assert!(id_a.starts_with("12D3KooW") && id_a.len() > 40, "{id_a}");
    assert_eq!(a.json(["id"])["peer_id"], id_a.as_str());
    let id_b = b.run(["id"]).ok().stdout.trim().to_string();
    assert_ne!(id_a, id_b);
    // The node key lives in the store, readable by its owner only, and survives (init made it).
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(a.path.join("keys/node.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(a.run(["id"]).ok().stdout.trim(), id_a);
}

#[test]
fn the_allow_list_is_kept_and_checked() {
    let a = Store::new();
    let b = Store::new();
    let c = Store::new();
    let id_a = a.run(["id"]).ok().stdout.trim().to_string();
    let id_b = b.run(["id"]).ok().stdout.trim().to_string();
    let id_c = c.run(["id"]).ok().stdout.trim().to_string();
    assert!(a.json(["peers", "ls"]).as_array().unwrap().is_empty());

    let out = a.run(["peers", "allow", &id_b, "--note", "rack 2"]).ok();
    assert!(out.stdout.contains(&id_b), "{out}");
    a.run(["peers", "allow", &id_b]).ok();
    // Commands reach the list through a running node as well.
    let node = Node::start(&a.path);
    a.run(["peers", "allow", &id_c]).ok();
    let ls = a.json(["peers", "ls"]);
    let ids: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let mut want = vec![id_b.as_str(), id_c.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let b_entry = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id_b.as_str())
        .unwrap();
    assert_eq!(b_entry["note"], "rack 2");

    // Garbage, the node itself, and denying a stranger are refused by name.
    let bad = a.run(["peers", "allow", "12D3KooWnotapeer"]).expect_code(1);
    assert!(bad.error_line().contains("invalid peer id"), "{bad}");
    let own = a.run(["peers", "allow", &id_a]).expect_code(1);
    assert!(own.error_line().contains("this node itself"), "{own}");
    a.run(["peers", "deny", &id_c]).ok();
    let again = a.run(["peers", "deny", &id_c]).expect_code(1);
    assert!(
        again.error_line().contains("not on this node's allow-list"),
        "{again}"
    );
    assert_eq!(node.stop(), Some(0));

    let text = std::fs::read_to_string(a.path.join("peers.toml")).unwrap();
    assert!(text.contains(&id_b) && !text.contains(&id_c), "{text}");
    let ls = a.run(["peers", "ls"]).ok();
    assert_eq!(ls.stdout.trim(), format!("{id_b}  rack 2"));
}
