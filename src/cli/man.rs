//! `airlock man`: the manual pages, generated from the same definitions as
//! `--help` (clap_mangen), for packages and for `man -l`.

use std::path::PathBuf;

use clap::CommandFactory;

use airlock::error::{Error, Result};

/// Print the manual page, or write one page per command into a directory.
///
/// Examples:
///   airlock man | man -l -
///   airlock man --dir /usr/local/share/man/man1   # airlock.1, airlock-run.1, …
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Write airlock.1 and one page per subcommand (airlock-run.1, …) into
    /// this directory (created if missing) instead of printing airlock.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let cmd = super::Cli::command();
    match a.dir {
        None => match clap_mangen::Man::new(cmd).render(&mut std::io::stdout().lock()) {
            // `airlock man | head`: the reader has seen enough
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r.map_err(|e| Error::Other(format!("cannot write the manual page: {e}"))),
        },
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                Error::Other(format!(
                    "cannot write the manual pages into {}: {e}",
                    dir.display()
                ))
            })
        }
    }
}
