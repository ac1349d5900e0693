//! Secret references (`[accounts.<agent>.<account>] secret_ref`,
//! `airlock auth --ref`, `--from-command`; docs/secret-refs.md) with the
//! real binary and real secret managers from Debian: `pass` over a
//! throwaway GnuPG home, and `age` for an encrypted file (sops is not
//! packaged in bookworm; `age -d` is the same flow: decrypt a file to
//! stdout). A sandbox started from references is judged by the genuine
//! agent CLIs (`airlock verify`). Every secret holds the canary, which must
//! never show up in argv, output at -vvv, status, state or errors.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{CANARY, TestContext};
use serde_json::Value;

/// This test's own marker inside the canary: the argv watcher scans every
/// process on the machine, and other tests put their canaries in argv on
/// purpose (as the refusal in `auth_ref_and_from_command_with_pass` does).
fn marker(tag: &str) -> String {
    format!("{CANARY}Q{tag}{}", std::process::id())
}

/// A fixture whose canary carries `marker(tag)`.
fn fixture(rel: &str, tag: &str) -> String {
    let p = format!("{}/tests/fixtures/agents/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .replace(CANARY, &marker(tag))
}

fn with_stdin(mut c: Command, input: &str) -> Output {
    common::output_with_stdin(&mut c, input)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn no_canary(what: &str, s: &str) {
    assert!(!s.contains(CANARY), "the secret leaked into {what}:\n{s}");
}

fn config(ctx: &TestContext, toml: &str) {
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(ctx.config_dir.join("config.toml"), toml).unwrap();
}

/// A real password store: a throwaway GnuPG home with an unattended key
/// (no passphrase), `pass init`, and entries inserted from stdin. Short
/// paths under /tmp: gpg-agent's socket path has a length limit.
struct PassStore {
    dir: tempfile::TempDir,
}

impl PassStore {
    fn new() -> Option<PassStore> {
        if Command::new("pass").arg("version").output().is_err() {
            if std::env::var_os("CI").is_some_and(|v| v == "true") {
                panic!("pass is not installed: scripts/install-test-deps.sh installs it");
            }
            eprintln!("skipping: pass is not installed (scripts/install-test-deps.sh)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("alp")
            .tempdir_in("/tmp")
            .unwrap();
        let s = PassStore { dir };
        std::fs::create_dir(s.gnupg()).unwrap();
        std::fs::set_permissions(s.gnupg(), std::fs::Permissions::from_mode(0o700)).unwrap();
        common::ok(
            &s.command("gpg")
                .args([
                    "--batch",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                    "--quick-gen-key",
                    "airlock test <test@airlock.invalid>",
                    "default",
                    "default",
                    "never",
                ])
                .output()
                .unwrap(),
        );
        common::ok(
            &s.command("pass")
                .args(["init", "test@airlock.invalid"])
                .output()
                .unwrap(),
        );
        Some(s)
    }

    fn gnupg(&self) -> PathBuf {
        self.dir.path().join("g")
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("p")
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GNUPGHOME", self.gnupg())
            .env("PASSWORD_STORE_DIR", self.store());
        c
    }

    /// `pass insert -m NAME`, the value on stdin.
    fn insert(&self, name: &str, value: &str) {
        let mut c = self.command("pass");
        c.args(["insert", "-m", name]);
        common::ok(&with_stdin(c, &format!("{value}\n")));
    }

    /// The environment `airlock` needs to run `pass show`.
    fn env_for(&self, ctx: &mut TestContext) {
        ctx.set_env("GNUPGHOME", &self.gnupg().display().to_string());
        ctx.set_env("PASSWORD_STORE_DIR", &self.store().display().to_string());
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        // the gpg-agent `pass` started: no daemon left behind
        let _ = self
            .command("gpgconf")
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// Runs `c` while a watcher scans every process's argv for `marker(tag)`.
fn watched(mut c: Command, tag: &str) -> Output {
    let stop = Arc::new(AtomicBool::new(false));
    let w = common::cmdline_watcher(marker(tag), stop.clone());
    let out = c.output().unwrap();
    stop.store(true, Ordering::SeqCst);
    let hits = w.join().unwrap();
    assert!(
        hits.is_empty(),
        "the secret was in a process's argv: {hits:?}"
    );
    out
}

fn status_json(ctx: &TestContext) -> Value {
    let out = ctx.cmd().args(["status", "--json"]).output().unwrap();
    let s = common::ok(&out);
    no_canary("status --json", &s);
    no_canary("status's stderr", &String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&s).unwrap()
}

fn reference_entry<'a>(status: &'a Value, agent: &str) -> &'a Value {
    entry(status, agent, "reference")
}

/// `agent`'s credential entry in `status --json` that is `stored_in` there.
fn entry<'a>(status: &'a Value, agent: &str, stored_in: &str) -> &'a Value {
    status["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["agent"] == agent && c["stored_in"] == stored_in)
        .unwrap_or_else(|| panic!("no {stored_in} entry for {agent}: {status}"))
}

fn state_file(ctx: &TestContext) -> String {
    let s = std::fs::read_to_string(ctx.state_dir.join("secret-refs.json")).unwrap();
    no_canary("the state file", &s);
    s
}

/// One sandbox, three agents, three forms, judged by the genuine CLIs:
/// claude's setup token from `cmd:pass show`, codex's API key from `env:`,
/// gemini's API key from a 0400 `file:`.
fn three_forms_in_a_sandbox(engine: &str) {
    let Some(pass) = PassStore::new() else {
        return;
    };
    let mut ctx = TestContext::new();
    pass.insert("anthropic", &fixture("claude/setup-token.txt", "three"));
    pass.env_for(&mut ctx);
    ctx.set_env(
        "OPENAI_KEY_FOR_TEST",
        &fixture("codex/api-key.txt", "three"),
    );
    let gemini = ctx.root.path().join("gemini-key");
    std::fs::write(&gemini, fixture("gemini/api-key.txt", "three")).unwrap();
    std::fs::set_permissions(&gemini, std::fs::Permissions::from_mode(0o400)).unwrap();
    config(
        &ctx,
        &format!(
            "[accounts.claude.default]\nsecret_ref = \"cmd:pass show anthropic\"\n\
             [accounts.codex.default]\nsecret_ref = \"env:OPENAI_KEY_FOR_TEST\"\n\
             [accounts.gemini.default]\nsecret_ref = \"file:{}\"\n",
            gemini.display()
        ),
    );
    let before = status_json(&ctx);
    assert_eq!(reference_entry(&before, "claude")["state"], "unchecked");

    let mut c = ctx.cmd();
    c.args([
        "verify",
        "--json",
        "--engine",
        engine,
        "--image",
        &common::user_image(),
        "-vvv",
    ]);
    let out = watched(c, "three");
    let all = text(&out);
    no_canary("verify's output at -vvv", &all);
    assert!(all.contains("secret reference"), "no debug log:\n{all}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let agent = |n: &str| {
        json["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == n)
            .unwrap_or_else(|| panic!("{n}: {json}"))
            .clone()
    };
    for (name, state, method) in [
        ("claude", "logged-in", "oauth_token"),
        ("codex", "logged-in", "api-key"),
        ("gemini", "configured", "gemini-api-key"),
    ] {
        let a = agent(name);
        assert_eq!(a["state"], state, "{name}: {a}\n{all}");
        assert_eq!(a["cli_method"], method, "{name}: {a}");
    }

    let after = status_json(&ctx);
    for (name, reference) in [
        ("claude", "cmd:pass show anthropic".to_owned()),
        ("codex", "env:OPENAI_KEY_FOR_TEST".to_owned()),
        ("gemini", format!("file:{}", gemini.display())),
    ] {
        let e = reference_entry(&after, name);
        assert_eq!(e["source"], reference.as_str(), "{e}");
        assert_eq!(e["last_result"]["result"], "ok", "{e}");
        assert_eq!(e["state"], "valid", "{e}");
    }
    assert_eq!(reference_entry(&after, "claude")["method"], "setup-token");
    state_file(&ctx);
}

#[test]
fn docker_three_forms_in_a_sandbox() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    three_forms_in_a_sandbox("docker");
}

#[test]
fn podman_three_forms_in_a_sandbox() {
    if !common::require_real("AIRLOCK_TEST_PODMAN") {
        return;
    }
    three_forms_in_a_sandbox("podman");
}

/// `airlock docker-flags --mode env` resolves without starting anything:
/// enough to see a reference resolved, or refused.
fn flags(ctx: &TestContext, agent: &str, tag: &str) -> Output {
    let mut c = ctx.cmd();
    c.args(["docker-flags", "--mode", "env", "--agent", agent, "-vvv"]);
    watched(c, tag)
}

#[test]
fn an_age_encrypted_file_through_cmd() {
    if Command::new("age").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "age is not installed: scripts/install-test-deps.sh installs it"
        );
        return;
    }
    let ctx = TestContext::new();
    let id = ctx.root.path().join("age-id.txt");
    common::ok(
        &Command::new("age-keygen")
            .arg("-o")
            .arg(&id)
            .output()
            .unwrap(),
    );
    let key = std::fs::read_to_string(&id).unwrap();
    let recipient = key
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    let enc = ctx.root.path().join("claude.age");
    let mut c = Command::new("age");
    c.args(["-r", &recipient, "-o"]).arg(&enc);
    common::ok(&with_stdin(c, &fixture("claude/setup-token.txt", "age")));
    config(
        &ctx,
        &format!(
            "[accounts.claude.default]\nsecret_ref = \"cmd:age -d -i {} {}\"\n",
            id.display(),
            enc.display()
        ),
    );
    let out = flags(&ctx, "claude", "age");
    no_canary("docker-flags at -vvv", &text(&out));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-e CLAUDE_CODE_OAUTH_TOKEN"),
        "{}",
        text(&out)
    );
    let e = reference_entry(&status_json(&ctx), "claude").clone();
    assert_eq!(e["last_result"]["result"], "ok", "{e}");
}

#[test]
fn a_hanging_command_is_killed_with_its_group_at_the_timeout() {
    let ctx = TestContext::new();
    let marker = format!("{}", 700_000 + std::process::id() % 99_999);
    config(
        &ctx,
        &format!(
            "[accounts.claude.default]\nsecret_ref = \"cmd:sh -c 'sleep {marker} & sleep {marker}'\"\ntimeout_seconds = 1\n"
        ),
    );
    let t = Instant::now();
    let out = flags(&ctx, "claude", "hang");
    let took = t.elapsed();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(10), "{all}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(all.contains("did not finish within 1 seconds"), "{all}");
    assert!(
        all.contains(&format!("cmd:sh -c 'sleep {marker} & sleep {marker}'")),
        "the error names the reference: {all}"
    );
    // neither the shell nor its background child is left
    common::wait_until(
        "the command's processes gone",
        Duration::from_secs(3),
        || {
            !std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|b| {
                    String::from_utf8_lossy(&b).contains(&format!("sleep\0{marker}"))
                })
            })
        },
    );
    let e = reference_entry(&status_json(&ctx), "claude").clone();
    assert_eq!(e["state"], "invalid", "{e}");
    assert_eq!(e["last_result"]["result"], "failed", "{e}");
    assert!(
        e["last_result"]["reason"]
            .as_str()
            .unwrap()
            .contains("did not finish"),
        "{e}"
    );
}

#[test]
fn failing_empty_and_malformed_references_are_clear_errors() {
    let mut ctx = TestContext::new();
    // a command that fails: exit 10, its stderr shown, prefixed
    config(
        &ctx,
        "[accounts.claude.default]\nsecret_ref = \"cmd:sh -c 'echo vault is sealed >&2; exit 1'\"\n",
    );
    let out = flags(&ctx, "claude", "fail");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(10), "{all}");
    assert!(
        all.contains("airlock: cmd:sh -c 'echo vault is sealed >&2; exit 1': vault is sealed"),
        "{all}"
    );
    assert!(all.contains("exited with status 1"), "{all}");

    // a command that prints nothing: exit 7
    config(
        &ctx,
        "[accounts.claude.default]\nsecret_ref = \"cmd:true\"\n",
    );
    let out = flags(&ctx, "claude", "fail");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("gave nothing"), "{}", text(&out));
    // for an agent nobody named (every agent, by default): a warning
    let out = ctx
        .cmd()
        .args(["docker-flags", "--mode", "env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("claude: skipped cmd:true: the secret reference cmd:true gave nothing"),
        "{}",
        text(&out)
    );

    // a malformed key (two lines), validated like `airlock auth`: exit 7,
    // and the value is not in the message
    ctx.set_env(
        "BAD_KEY",
        &format!(
            "sk-ant-oat01-{}-AAAAAAAAAAAAAAAAAAAAAAAAAAAA\nsecond line",
            marker("fail")
        ),
    );
    config(
        &ctx,
        "[accounts.claude.default]\nsecret_ref = \"cmd:printenv BAD_KEY\"\n",
    );
    let out = flags(&ctx, "claude", "fail");
    let all = text(&out);
    no_canary("the error at -vvv", &all);
    assert_eq!(out.status.code(), Some(7), "{all}");
    assert!(all.contains("cmd:printenv BAD_KEY"), "{all}");
    assert!(all.contains("2 lines"), "{all}");
    let e = reference_entry(&status_json(&ctx), "claude").clone();
    assert_eq!(e["last_result"]["result"], "failed", "{e}");
    state_file(&ctx);

    // an unset variable: exit 10, naming it
    config(
        &ctx,
        "[accounts.claude.default]\nsecret_ref = \"env:NOT_SET_HERE\"\n",
    );
    let out = flags(&ctx, "claude", "fail");
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(text(&out).contains("NOT_SET_HERE is not set"));

    // doctor checks references without running them
    config(
        &ctx,
        "[accounts.claude.default]\nsecret_ref = \"cmd:airlock-no-such-manager show x\"\n\
         [accounts.codex.default]\nsecret_ref = \"cmd:sh -c 'touch ran-by-doctor'\"\n",
    );
    let out = ctx.cmd().args(["doctor", "--json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |n: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {doc}"))
            .clone()
    };
    let c = find("secret reference claude:default");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("not installed"),
        "{c}"
    );
    assert_eq!(find("secret reference codex:default")["status"], "ok");
    assert!(
        !ctx.home.join("ran-by-doctor").exists(),
        "doctor ran a command"
    );

    // a missing file: exit 10
    config(
        &ctx,
        "[accounts.claude.default]\nsecret_ref = \"file:/nonexistent/airlock-secret\"\n",
    );
    let out = flags(&ctx, "claude", "fail");
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
}

#[test]
fn auth_ref_and_from_command_with_pass() {
    let Some(pass) = PassStore::new() else {
        return;
    };
    let mut ctx = TestContext::new();
    pass.env_for(&mut ctx);
    pass.insert("anthropic", &fixture("claude/setup-token.txt", "auth"));
    pass.insert("openai", &fixture("codex/api-key.txt", "auth"));

    // --ref: checked once, written to config.toml (no value there)
    let mut c = ctx.cmd();
    c.args([
        "auth",
        "claude",
        "--account",
        "work",
        "--ref",
        "cmd:pass show anthropic",
        "-vvv",
    ]);
    let out = watched(c, "three");
    let all = text(&out);
    no_canary("auth --ref", &all);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let cfg = std::fs::read_to_string(ctx.config_dir.join("config.toml")).unwrap();
    no_canary("config.toml", &cfg);
    assert!(
        cfg.contains("[accounts.claude.work]\nsecret_ref = \"cmd:pass show anthropic\""),
        "{cfg}"
    );
    let e = reference_entry(&status_json(&ctx), "claude").clone();
    assert_eq!(e["account"], "work");
    assert_eq!(e["last_result"]["result"], "ok", "{e}");

    // --from-command: runs once, stores the value it printed in the vault
    let mut c = ctx.cmd();
    c.args([
        "auth",
        "codex",
        "--from-command",
        "pass show openai",
        "-vvv",
    ]);
    let out = watched(c, "three");
    let all = text(&out);
    no_canary("auth --from-command", &all);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let st = status_json(&ctx);
    let stored = entry(&st, "codex", "vault");
    assert_eq!(stored["method"], "api-key");
    assert_eq!(stored["source"], "cmd:pass show openai");

    // a value stored for an account that has a reference: warned, and
    // status says the reference comes first
    let mut c = ctx.cmd();
    c.args([
        "auth",
        "claude",
        "--account",
        "work",
        "--from-command",
        "pass show anthropic",
    ]);
    let out = watched(c, "auth");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("claude:work has a secret reference in the config file (cmd:pass show anthropic), which comes first"),
        "{all}"
    );
    let st = status_json(&ctx);
    let shadowed = entry(&st, "claude", "vault");
    assert_eq!(
        shadowed["delivery"],
        "nothing: the secret reference cmd:pass show anthropic of claude:work comes first",
        "{st}"
    );

    // a reference holding a secret itself is refused without echoing it
    let out = ctx
        .cmd()
        .args(["auth", "claude", "--ref"])
        .arg(format!(
            "cmd:echo sk-ant-oat01-{CANARY}AAAAAAAAAAAAAAAAAAAAAAA"
        ))
        .output()
        .unwrap();
    no_canary("the refusal", &text(&out));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // a failing --ref stores nothing
    let before = std::fs::read_to_string(ctx.config_dir.join("config.toml")).unwrap();
    let out = ctx
        .cmd()
        .args(["auth", "gemini", "--ref", "cmd:pass show nothing-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(
        text(&out).contains("airlock: cmd:pass show nothing-here: "),
        "pass's stderr is shown, prefixed: {}",
        text(&out)
    );
    let after = std::fs::read_to_string(ctx.config_dir.join("config.toml")).unwrap();
    assert_eq!(before, after);
}

/// `airlock accounts` lists the references in config.toml next to the
/// stored credentials (kind `reference`, scheme, text; a malformed one in a
/// safe form); `airlock remove` takes a reference out of config.toml,
/// keeping the rest of the file, its comments and its mode, and refuses to
/// rewrite a symbolic link.
#[test]
fn accounts_lists_and_remove_removes_references() {
    let ctx = TestContext::new();
    let tok = ctx.root.path().join("tok");
    std::fs::write(&tok, format!("sk-ant-oat01-{CANARY}-{}", "x".repeat(60))).unwrap();
    let out = ctx
        .cmd()
        .args(["auth", "claude", "--method", "token", "--from-file"])
        .arg(&tok)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let secret_in_ref = format!("cmd:printf sk-ant-oat01-{CANARY}{}", "y".repeat(40));
    config(
        &ctx,
        &format!(
            r#"# references, reviewed in my dotfiles
[accounts.claude.work]
# from pass
secret_ref = "cmd:pass show anthropic"
method = "token"

[accounts.claude.bad]
secret_ref = "{secret_in_ref}"

[accounts.codex.default]
secret_ref = "file:/run/agenix/openai"   # agenix
timeout_seconds = 5

[accounts.gemini.ci]
secret_ref = "env:GEMINI_KEY"
"#
        ),
    );
    let cfg = ctx.config_dir.join("config.toml");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();

    let out = ctx.cmd().args(["accounts", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    no_canary("accounts --json", &text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = common::account_ids(&out.stdout);
    let rows: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .zip(ids)
        .map(|(r, id)| {
            (
                id,
                r["kind"].as_str().unwrap().to_owned(),
                r["reference"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let row = |id: &str, kind: &str, reference: &str| (id.into(), kind.into(), reference.into());
    assert_eq!(
        rows,
        vec![
            row(
                "claude:bad",
                "reference",
                "(not shown: it holds something that looks like a credential)"
            ),
            row("claude:default", "stored", ""),
            row("claude:work", "reference", "cmd:pass show anthropic"),
            row("codex:default", "reference", "file:/run/agenix/openai"),
            row("gemini:ci", "reference", "env:GEMINI_KEY"),
        ]
    );
    let work = &v[2];
    assert_eq!(work["scheme"], "cmd", "{work}");
    assert_eq!(work["method"], "setup-token", "{work}");
    assert_eq!(v[0]["scheme"], "invalid", "{}", v[0]);
    assert!(v[0]["problem"].as_str().is_some(), "{}", v[0]);

    let out = ctx
        .cmd()
        .args(["accounts", "codex", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let out = ctx.cmd().arg("accounts").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = text(&out);
    no_canary("accounts", &table);
    assert!(table.contains("ref cmd:pass show anthropic"), "{table}");
    assert!(table.contains("ref env:GEMINI_KEY"), "{table}");

    // remove: the codex section goes, everything else stays as written
    let before = std::fs::read_to_string(&cfg).unwrap();
    let out = ctx.cmd().args(["remove", "codex"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("removed the secret reference of codex"),
        "{}",
        text(&out)
    );
    let after = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        !after.contains("codex") && !after.contains("agenix"),
        "{after}"
    );
    let expected = before.replace(
        "[accounts.codex.default]\nsecret_ref = \"file:/run/agenix/openai\"   # agenix\ntimeout_seconds = 5\n\n",
        "",
    );
    assert_eq!(after, expected, "only the codex section is gone");
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the file's mode is kept");

    // a reference next to a stored credential of another account: only the reference goes
    let out = ctx
        .cmd()
        .args(["remove", "claude", "--account", "work"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = std::fs::read_to_string(&cfg).unwrap();
    assert!(!after.contains("pass show"), "{after}");
    assert!(
        after.starts_with("# references, reviewed in my dotfiles\n"),
        "{after}"
    );
    let out = ctx.cmd().args(["accounts", "--json"]).output().unwrap();
    assert_eq!(
        common::account_ids(&out.stdout),
        ["claude:bad", "claude:default", "gemini:ci"]
    );

    // nothing there: exit 6, the file untouched
    let out = ctx
        .cmd()
        .args(["remove", "gemini", "--account", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), after);

    // a stored credential: the vault record goes, the config stays
    let out = ctx.cmd().args(["remove", "claude"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), after);

    // a symbolic link (home-manager): not rewritten, exit 2
    let real = ctx.root.path().join("managed.toml");
    std::fs::rename(&cfg, &real).unwrap();
    std::os::unix::fs::symlink(&real, &cfg).unwrap();
    let out = ctx
        .cmd()
        .args(["remove", "gemini", "--account", "ci"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
    assert!(
        std::fs::symlink_metadata(&cfg)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), after);
}
