//! The examples under examples/ compile and run (CI builds them with
//! `cargo test --all-targets`; here each one is run and its output checked).

use std::process::Command;

fn run_example(name: &str, env: &[(&str, &str)]) -> String {
    let mut c = Command::new(env!("CARGO"));
    c.args(["run", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn examples_run() {
    let token = format!("sk-ant-oat01-CANARYx7Q2zV9{}AA", "q".repeat(80));
    let out = run_example("setup_credential", &[("CLAUDE_CODE_OAUTH_TOKEN", &token)]);
    assert!(out.contains("stored claude:work (setup-token)"), "{out}");
    assert!(!out.contains("CANARY"), "{out}");

    let out = run_example("status", &[]);
    assert!(out.contains("codex") && out.contains("gemini"), "{out}");
    assert!(out.contains("\"credentials\""), "{out}");

    let out = run_example("docker_flags", &[]);
    assert!(out.contains("--entrypoint"), "{out}");
    assert!(out.contains("CLAUDE_CODE_OAUTH_TOKEN"), "{out}");
    assert!(!out.contains("zzzzzzzz"), "{out}");
}
