//! `ferry completions SHELL` and `ferry manpages DIR`: shell completion scripts and man pages, generated from
//! the clap definitions in `args.rs`, so they name every command and option this binary has.

use crate::args::{Cli, CompletionsArgs};
use anyhow::Context;
use clap::CommandFactory;
use std::path::Path;

/// Print the completion script for the shell `a` names.
pub fn completions(a: &CompletionsArgs) -> anyhow::Result<()> {
    let shell: clap_complete::Shell = a
        .shell
        .parse()
        .map_err(|e| anyhow::anyhow!("shell {:?}: {e}", a.shell))?;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
    crate::output::raw(&script);
    Ok(())
}

/// Write `ferry.1` and a page per subcommand, nested ones too (`ferry-pin-set.1`), into `dir`.
pub fn manpages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = 0;
    write_pages(&cmd, "ferry", dir, &mut written)?;
    crate::output::note(format!("{written} man pages in {}", dir.display()));
    Ok(())
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let page = cmd.clone().name(name.to_string());
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .with_context(|| format!("rendering the page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
