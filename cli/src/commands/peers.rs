use crate::args::{Global, PeersCommand};
use crate::output;
use ferry_node::membership::{self, AllowList};

/// `ferry id`: this node's peer id.
pub fn id(g: &Global) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let id = membership::peer_id(store.root())?;
    if g.json {
        output::json(&serde_json::json!({ "peer_id": id.to_string() }));
    } else {
        output::line(id);
    }
    Ok(())
}

pub fn run(g: &Global, p: PeersCommand) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let list = AllowList::of(store.root());
    match p {
        PeersCommand::Allow { peer, note } => {
            let id = membership::parse_peer_id(&peer)?;
            if id == membership::peer_id(store.root())? {
                anyhow::bail!("{id} is this node itself");
            }
            if list.allow(&id, note.as_deref())? {
                output::line(format!("allowing peer {id}"));
            } else {
                output::line(format!("peer {id} is allowed already"));
            }
        }
        PeersCommand::Deny { peer } => {
            let id = membership::parse_peer_id(&peer)?;
            list.deny(&id)?;
            output::line(format!("no longer allowing peer {id}"));
        }
        PeersCommand::Ls => {
            let members = list.members()?;
            if g.json {
                output::json(&members);
            } else {
                for m in &members {
                    output::line(
                        format!("{}  {}", m.id, m.note.as_deref().unwrap_or("")).trim_end(),
                    );
                }
            }
        }
    }
    Ok(())
}
