//! `docs/cli-reference.md` is generated from the same clap declarations as
//! `--help`, so the two cannot drift: this test regenerates it and fails when
//! the committed file differs. To update it after changing a flag:
//! `AIRLOCK_UPDATE_DOCS=1 cargo test --test cli_docs`.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .arg("--help")
        .env_clear()
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Subcommand names, in `airlock --help` order (hidden ones are not listed).
fn subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

fn render() -> String {
    let top = help(&[]);
    let mut doc = String::from(
        "# airlock command reference\n\n\
         Generated from the command's own `--help` text by `tests/cli_docs.rs`;\n\
         do not edit by hand. Exit codes and environment: [cli.md](cli.md).\n\n\
         ## airlock\n\n```text\n",
    );
    doc.push_str(top.trim_end());
    doc.push_str("\n```\n");
    for cmd in subcommands(&top) {
        doc.push_str(&format!("\n## airlock {cmd}\n\n```text\n"));
        doc.push_str(help(&[&cmd]).trim_end());
        doc.push_str("\n```\n");
    }
    doc
}

#[test]
fn cli_reference_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli-reference.md");
    let want = render();
    assert!(want.contains("## airlock run"), "subcommands not found");
    if std::env::var_os("AIRLOCK_UPDATE_DOCS").is_some() {
        std::fs::write(path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/cli-reference.md is out of date: run AIRLOCK_UPDATE_DOCS=1 cargo test --test cli_docs"
    );
}
