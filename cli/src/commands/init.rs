use crate::args::{Global, InitArgs};
use crate::output;
use ferry_node::config::{Chunking, StoreConfig};
use ferry_node::{membership, Store};

pub fn run(g: &Global, a: InitArgs) -> anyhow::Result<()> {
    let dir = super::store_dir(g)?;
    if a.if_missing && dir.join("config.toml").exists() {
        if g.json {
            output::json(&serde_json::json!({ "store": dir, "existed": true }));
        } else {
            output::line(format!("store {} exists", dir.display()));
        }
        return Ok(());
    }
    let to_u32 = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| anyhow::anyhow!("--{what} {v} is too large"))
    };
    let config = StoreConfig {
        chunking: Chunking {
            min: to_u32(a.min_chunk, "min-chunk")?,
            avg: to_u32(a.avg_chunk, "avg-chunk")?,
            max: to_u32(a.max_chunk, "max-chunk")?,
            ..Chunking::default()
        },
        zstd_level: a.zstd_level,
        ..StoreConfig::default()
    };
    let store = Store::create(&dir, config)?;
    let key_id = store.publisher().id().to_string();
    let peer_id = membership::peer_id(store.root())?.to_string();
    if g.json {
        output::json(&serde_json::json!({ "store": dir, "key_id": key_id, "peer_id": peer_id }));
    } else {
        output::line(format!(
            "created store {} with publisher key {key_id}; node peer id {peer_id}",
            dir.display()
        ));
    }
    Ok(())
}
