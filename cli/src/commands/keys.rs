use crate::args::{Global, KeysCommand};
use crate::output;

pub fn run(g: &Global, k: KeysCommand) -> anyhow::Result<()> {
    match k {
        KeysCommand::Export { openpgp: false } => {
            let store = super::open_store(g)?;
            output::line(store.publisher().to_line());
        }
        KeysCommand::Export { openpgp: true } => {
            let store = super::open_store(g)?;
            let key = store.repository_key()?;
            output::note(format!("fingerprint {}", key.fingerprint()));
            output::line(key.public_armored().trim_end());
        }
    }
    Ok(())
}
