use crate::args::{Global, TrustCommand};
use crate::output;
use ferry_node::trust::{read_key_file, Origin};

pub fn run(g: &Global, t: TrustCommand) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    match t {
        TrustCommand::Add { file } => {
            let key = read_key_file(&file)?;
            if store.trust_add(key)? {
                output::line(format!("trusting key {}", key.id()));
            } else {
                output::line(format!("key {} is trusted already", key.id()));
            }
        }
        TrustCommand::Ls => {
            let trust = store.trusted()?;
            if g.json {
                let rows: Vec<_> = trust
                    .keys()
                    .iter()
                    .map(|(k, o)| {
                        serde_json::json!({
                            "id": k.id().to_string(),
                            "key": k.to_line(),
                            "own": *o == Origin::Own,
                        })
                    })
                    .collect();
                output::json(&rows);
            } else {
                for (k, o) in trust.keys() {
                    let note = match o {
                        Origin::Own => "  (this store's publisher key)",
                        Origin::Added => "",
                    };
                    output::line(format!("{}{note}", k.to_line()));
                }
            }
        }
        TrustCommand::Rm { key } => {
            let id = store
                .trusted()?
                .keys()
                .iter()
                .map(|(k, _)| k.id())
                .find(|id| id.to_string() == key)
                .ok_or_else(|| anyhow::anyhow!("key {key} is not in the trust list"))?;
            store.trust_remove(id)?;
            output::line(format!("no longer trusting key {key}"));
        }
    }
    Ok(())
}
