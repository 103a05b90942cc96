use crate::args::{Global, KeysCommand};
use crate::output;

pub fn run(g: &Global, k: KeysCommand) -> anyhow::Result<()> {
    match k {
        KeysCommand::Export => {
            let store = super::open_store(g)?;
            output::line(store.publisher().to_line());
        }
    }
    Ok(())
}
