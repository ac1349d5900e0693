//! `airlock import <tool>` through the real binary, on fixtures written in
//! each tool's documented layout (tests/fixtures/import/<tool>/): the dry
//! run reports without storing, `--apply` stores what `airlock auth` would,
//! malformed input is refused with exit code 7 and nothing stored, the
//! other tool's files are never modified, and no token byte appears in any
//! output. headjack is read from the real kernel keyring and the real
//! Secret Service (gnome-keyring, brought up by scripts/test.sh).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::SystemTime;

use airlock::vault::file::{FileBackend, FileOptions, Passphrase};
use airlock::vault::{Backend, CredentialId, Method};
use common::{CANARY, PASSPHRASE, TestContext, ok, require_real};
use sha2::Digest as _;

/// The tests that use headjack's keyring entries (one global namespace).
static KEYRING: Mutex<()> = Mutex::new(());

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn agent_fixture(rel: &str) -> String {
    std::fs::read_to_string(fixtures().join("agents").join(rel))
        .unwrap()
        .trim()
        .to_owned()
}

/// Copies `tests/fixtures/import/<rel>` (file or directory) under the
/// context's root, files 0600 as the tools write them; returns the copy.
fn copy(ctx: &TestContext, rel: &str) -> PathBuf {
    fn go(from: &Path, to: &Path) {
        if from.is_dir() {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                go(&e.path(), &to.join(e.file_name()));
            }
        } else {
            std::fs::copy(from, to).unwrap();
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let to = ctx.root.path().join("src").join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    go(&fixtures().join("import").join(rel), &to);
    to
}

/// Every file under `dir` (or `dir` itself) with its SHA-256, mode and
/// modification time.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let sum = sha2::Sha256::digest(std::fs::read(&p).unwrap()).to_vec();
            out.insert(p, (sum, md.permissions().mode(), md.modified().unwrap()));
        }
    }
    out
}

fn import(ctx: &TestContext, args: &[&str]) -> Output {
    ctx.cmd().arg("import").args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// No byte of a fixture token in any output: the canary and each token's
/// distinctive tail.
fn assert_no_secret(out: &Output) {
    let all = text(out);
    assert!(!all.contains(CANARY), "a token leaked: {all}");
    for t in [
        "FAKE01234567AA",
        "ACCS01234567AA",
        "FAKE012\n",
        "sk-ant-o",
        "sk-proj",
    ] {
        assert!(!all.contains(t), "a token leaked ({t}): {all}");
    }
}

fn vault(ctx: &TestContext) -> FileBackend {
    FileBackend::open(FileOptions {
        path: ctx.data_dir.join("vault.airlock"),
        passphrase: Passphrase::Provided(PASSPHRASE.into()),
        key_cache: None,
    })
    .unwrap()
}

fn stored(ctx: &TestContext) -> Vec<airlock::vault::Record> {
    if !ctx.data_dir.join("vault.airlock").exists() {
        return Vec::new();
    }
    vault(ctx).list().unwrap()
}

fn get(ctx: &TestContext, id: &str) -> airlock::vault::Record {
    vault(ctx)
        .get(&CredentialId::parse(id).unwrap())
        .unwrap()
        .unwrap_or_else(|| panic!("{id} was not stored"))
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "[DATE]");
    s.add_filter(r"\((in|\d)[^)]*\)", "([RELATIVE])");
    s
}

fn snapshot(name: &str, ctx: &TestContext, out: &Output) {
    let mut s = settings();
    for (from, to) in ctx.filters() {
        s.add_filter(&from, &to);
    }
    s.bind(|| insta::assert_snapshot!(name, text(out)));
}

#[test]
fn cloister_dry_run_reports_and_apply_stores() {
    let ctx = TestContext::new();
    let file = copy(&ctx, "cloister/config.yaml");
    let before = fingerprint(&file);
    let out = import(&ctx, &["cloister", "--from", file.to_str().unwrap()]);
    ok(&out);
    assert_no_secret(&out);
    snapshot("cloister_dry_run", &ctx, &out);
    assert!(
        !ctx.data_dir.join("vault.airlock").exists(),
        "a dry run created the vault"
    );

    let out = import(
        &ctx,
        &["cloister", "--from", file.to_str().unwrap(), "--apply"],
    );
    ok(&out);
    assert_no_secret(&out);
    let claude = get(&ctx, "claude");
    assert_eq!(claude.method, Method::SetupToken);
    // The token's year counts from when cloister wrote the file.
    let written =
        jiff::Timestamp::try_from(std::fs::metadata(&file).unwrap().modified().unwrap()).unwrap();
    assert_eq!(claude.meta.created_at, written);
    assert_eq!(
        claude.meta.expires_at,
        Some(written + jiff::SignedDuration::from_hours(365 * 24))
    );
    assert_eq!(
        claude.secret.expose(),
        agent_fixture("claude/setup-token.txt")
    );
    assert!(
        claude.meta.source.starts_with("import:cloister:"),
        "{}",
        claude.meta.source
    );
    let codex = get(&ctx, "codex");
    assert_eq!(codex.method, Method::ApiKey);
    assert_eq!(codex.secret.expose(), agent_fixture("codex/api-key.txt"));
    assert_eq!(fingerprint(&file), before, "cloister's file was modified");

    // A second import would replace: the dry run says so, and --apply
    // refuses as a whole without --replace.
    let out = import(&ctx, &["cloister", "--from", file.to_str().unwrap()]);
    assert!(
        ok(&out).contains("would replace (needs --replace) claude:default"),
        "{}",
        text(&out)
    );
    let out = import(
        &ctx,
        &["cloister", "--from", file.to_str().unwrap(), "--apply"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--replace"), "{}", text(&out));
    let out = import(
        &ctx,
        &[
            "cloister",
            "--from",
            file.to_str().unwrap(),
            "--apply",
            "--replace",
        ],
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("replaced claude:default"));
}

#[test]
fn cloister_api_key_and_existing_login() {
    let ctx = TestContext::new();
    let file = copy(&ctx, "cloister/config-api-key.yaml");
    let out = import(
        &ctx,
        &[
            "cloister",
            "--from",
            file.to_str().unwrap(),
            "--account",
            "team",
            "--apply",
        ],
    );
    ok(&out);
    let r = get(&ctx, "claude:team");
    assert_eq!(r.method, Method::ApiKey);
    assert_eq!(r.secret.expose(), agent_fixture("claude/api-key.txt"));

    // auth_method: existing is the host's own login: a linked host login.
    let file = copy(&ctx, "cloister/config-existing.yaml");
    let out = import(&ctx, &["cloister", "--from", file.to_str().unwrap()]);
    ok(&out);
    assert!(
        text(&out).contains("there is none on this machine"),
        "{}",
        text(&out)
    );
    let host = ctx.home.join(".claude/.credentials.json");
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join("agents/claude/credentials-max.json"), &host).unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = fingerprint(&host);
    let out = import(
        &ctx,
        &["cloister", "--from", file.to_str().unwrap(), "--apply"],
    );
    ok(&out);
    assert_no_secret(&out);
    let r = get(&ctx, "claude");
    assert_eq!(r.method, Method::Session);
    assert_eq!(r.meta.host_link.as_deref(), Some(host.to_str().unwrap()));
    assert_eq!(fingerprint(&host), before, "the host login was modified");
}

#[test]
fn forage_keeps_the_dates_and_references_secret_files() {
    let ctx = TestContext::new();
    let state = copy(&ctx, "forage/valid");
    let map = copy(&ctx, "forage/secrets.json");
    let before = fingerprint(&state);
    let args = [
        "forage",
        "--from",
        state.to_str().unwrap(),
        "--secrets-map",
        map.to_str().unwrap(),
    ];
    let out = import(&ctx, &args);
    ok(&out);
    assert_no_secret(&out);
    snapshot("forage_dry_run", &ctx, &out);
    let out = import(&ctx, &[&args[..], &["--json"]].concat());
    let report: serde_json::Value = serde_json::from_slice(&ok(&out).into_bytes()).unwrap();
    assert_eq!(report["items"][0]["expires_at"], "2027-03-19T21:00:00Z");
    assert_eq!(report["items"][0]["created_at"], "2026-03-19T21:00:00Z");
    assert_eq!(
        report["items"][1]["source"],
        format!(
            "file:/run/secrets/anthropic-api-key (from {})",
            map.display()
        )
    );
    assert_eq!(report["items"][1]["action"], "would reference");
    assert_eq!(report["items"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(
        report["not_imported"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert!(stored(&ctx).is_empty());
    let config = ctx.config_dir.join("config.toml");
    assert!(!config.exists());

    // --apply reads each secret file once, as `airlock auth --ref` does:
    // here they are not there, so nothing at all is imported.
    let out = import(&ctx, &[&args[..], &["--apply"]].concat());
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("/run/secrets/"), "{}", text(&out));
    assert!(
        stored(&ctx).is_empty(),
        "the token was stored before the references were checked"
    );
    assert!(!config.exists());

    // The same map with files that exist: the token is stored, the secret
    // files are referenced from the config file, never copied.
    let secrets = ctx.root.path().join("run-secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let mut real = serde_json::Map::new();
    for (name, fixture) in [
        ("anthropic", "claude/api-key.txt"),
        ("openai", "codex/api-key.txt"),
    ] {
        let f = secrets.join(name);
        std::fs::write(&f, agent_fixture(fixture)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        real.insert(name.into(), f.to_str().unwrap().into());
    }
    std::fs::write(&map, serde_json::Value::Object(real).to_string()).unwrap();
    let before_secrets = fingerprint(&secrets);
    let out = import(&ctx, &[&args[..], &["--apply"]].concat());
    ok(&out);
    assert_no_secret(&out);
    let r = get(&ctx, "claude");
    assert_eq!(r.method, Method::SetupToken);
    assert_eq!(
        r.meta.expires_at,
        Some("2027-03-19T21:00:00Z".parse().unwrap())
    );
    assert_eq!(r.meta.created_at, "2026-03-19T21:00:00Z".parse().unwrap());
    assert_eq!(r.secret.expose(), agent_fixture("claude/setup-token.txt"));
    assert_eq!(
        stored(&ctx).len(),
        1,
        "secret files are references, not copies"
    );
    let toml = std::fs::read_to_string(&config).unwrap();
    assert!(!toml.contains(CANARY), "{toml}");
    for (account, name) in [
        ("claude.anthropic", "anthropic"),
        ("codex.openai", "openai"),
    ] {
        assert!(
            toml.contains(&format!(
                "[accounts.{account}]\nsecret_ref = \"file:{}\"",
                secrets.join(name).display()
            )),
            "{toml}"
        );
    }
    // airlock resolves them like any reference: status names them, never the value.
    let out = ctx.cmd().args(["status"]).output().unwrap();
    assert_no_secret(&out);
    assert!(text(&out).contains("anthropic"), "{}", text(&out));
    assert_eq!(
        fingerprint(&state),
        before,
        "forage's state dir was modified"
    );
    assert_eq!(
        fingerprint(&secrets),
        before_secrets,
        "a secret file was modified"
    );
}

#[test]
fn caw_bound_credentials_become_host_login_references() {
    let ctx = TestContext::new();
    let claude = ctx.home.join(".claude/.credentials.json");
    let codex = ctx.home.join(".codex/auth.json");
    for (from, to) in [
        ("claude/credentials-max.json", &claude),
        ("codex/auth-chatgpt.json", &codex),
    ] {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixtures().join("agents").join(from), to).unwrap();
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let manifest = copy(&ctx, "caw/manifest.json");
    let text_ = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text_.replace("@HOME@", ctx.home.to_str().unwrap()),
    )
    .unwrap();
    let before = (fingerprint(&ctx.home), fingerprint(&manifest));
    let out = import(&ctx, &["caw", "--from", manifest.to_str().unwrap()]);
    ok(&out);
    assert_no_secret(&out);
    snapshot("caw_dry_run", &ctx, &out);
    let out = import(
        &ctx,
        &["caw", "--from", manifest.to_str().unwrap(), "--apply"],
    );
    ok(&out);
    assert_no_secret(&out);
    for (id, host) in [("claude", &claude), ("codex", &codex)] {
        let r = get(&ctx, id);
        assert_eq!(r.method, Method::Session);
        assert_eq!(r.meta.host_link.as_deref(), Some(host.to_str().unwrap()));
    }
    assert_eq!(stored(&ctx).len(), 2, "config files are not imported");
    assert_eq!((fingerprint(&ctx.home), fingerprint(&manifest)), before);
}

#[test]
fn claude_hub_takes_only_the_credentials_file() {
    let ctx = TestContext::new();
    let dir = copy(&ctx, "claude-hub/valid");
    let before = fingerprint(&dir);
    let out = import(&ctx, &["claude-hub", "--from", dir.to_str().unwrap()]);
    ok(&out);
    assert_no_secret(&out);
    snapshot("claude_hub_dry_run", &ctx, &out);
    ok(&import(
        &ctx,
        &["claude-hub", "--from", dir.to_str().unwrap(), "--apply"],
    ));
    let r = get(&ctx, "claude");
    assert_eq!(r.method, Method::Session);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(r.secret.expose()).unwrap(),
        serde_json::from_str::<serde_json::Value>(&agent_fixture("claude/credentials-max.json"))
            .unwrap()
    );
    assert_eq!(
        r.meta.host_link, None,
        "a captured copy is not the host's login"
    );
    assert_eq!(fingerprint(&dir), before);
}

/// Malformed input: exit code 7, a message naming the file and a fix,
/// nothing stored, no token in the output, the file untouched.
#[test]
fn malformed_input_is_refused_with_exit_code_7() {
    let ctx = TestContext::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "cloister",
            "cloister/malformed-method.yaml",
            "not token, existing or api_key",
        ),
        (
            "cloister",
            "cloister/malformed-token.yaml",
            "contains spaces",
        ),
        (
            "cloister",
            "cloister/malformed-yaml.yaml",
            "is not valid YAML",
        ),
        ("forage", "forage/malformed", "is not valid JSON"),
        ("claude-hub", "claude-hub/malformed", "is empty"),
        ("caw", "caw/malformed-strategy.json", "not bind or copy"),
        ("caw", "caw/malformed-json.json", "is not valid JSON"),
    ];
    for (tool, rel, problem) in cases {
        let path = copy(&ctx, rel);
        let before = fingerprint(&path);
        let out = import(&ctx, &[tool, "--from", path.to_str().unwrap(), "--apply"]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(7), "{rel}: {msg}");
        assert!(msg.contains(problem), "{rel}: {msg}");
        let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
        assert!(
            msg.contains(name),
            "{rel}: the message names no file: {msg}"
        );
        assert_no_secret(&out);
        assert!(stored(&ctx).is_empty(), "{rel}: something was stored");
        assert_eq!(fingerprint(&path), before, "{rel} was modified");
    }
}

/// A cloister file with one valid and one invalid credential stores neither.
#[test]
fn nothing_is_half_stored() {
    let ctx = TestContext::new();
    let f = ctx.root.path().join("config.yaml");
    std::fs::write(
        &f,
        format!(
            "agents:\n  codex:\n    api_key: \"{}\"\n  claude:\n    auth_method: api_key\n    api_key: \"sk-ant-api03-{CANARY} broken\"\n",
            agent_fixture("codex/api-key.txt")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = import(
        &ctx,
        &["cloister", "--from", f.to_str().unwrap(), "--apply"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_no_secret(&out);
    assert!(stored(&ctx).is_empty());
}

/// Runs `cmd` with `input` on stdin; asserts success; returns its stdout.
fn run_stdin(cmd: &mut Command, input: &str) -> String {
    let out = common::output_with_stdin(cmd, input);
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn entry(kind: &str, value: &str) -> String {
    serde_json::json!({"type": kind, "value": value}).to_string()
}

#[test]
fn headjack_kernel_keyring() {
    if !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let _g = KEYRING.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctx = TestContext::new();
    ctx.set_env("HEADJACK_KEYRING_BACKEND", "keyctl");
    let ring = run_stdin(
        Command::new("keyctl").args(["newring", "com.headjack.cli", "@s"]),
        "",
    );
    let add = |name: &str, payload: &str| {
        run_stdin(
            Command::new("keyctl").args(["padd", "user", name, &ring]),
            payload,
        );
    };
    add(
        "claude-credential",
        &entry("subscription", &agent_fixture("claude/setup-token.txt")),
    );
    add(
        "codex-credential",
        &entry("subscription", &agent_fixture("codex/auth-chatgpt.json")),
    );
    add(
        "gemini-credential",
        &entry("apikey", &agent_fixture("gemini/api-key.txt")),
    );
    let out = import(&ctx, &["headjack"]);
    ok(&out);
    assert_no_secret(&out);
    snapshot("headjack_keyctl_dry_run", &ctx, &out);
    let out = import(&ctx, &["headjack", "--apply", "--account", "hj"]);
    ok(&out);
    assert_eq!(get(&ctx, "claude:hj").method, Method::SetupToken);
    assert_eq!(get(&ctx, "codex:hj").method, Method::Session);
    assert_eq!(
        get(&ctx, "gemini:hj").secret.expose(),
        agent_fixture("gemini/api-key.txt")
    );
    // Read only: the entries are still there, unchanged.
    let left = run_stdin(Command::new("keyctl").args(["rdescribe", &ring]), "");
    assert!(left.contains("com.headjack.cli"), "{left}");
    let listed = run_stdin(Command::new("keyctl").args(["rlist", &ring]), "");
    assert_eq!(listed.split_whitespace().count(), 3, "{listed}");

    // A malformed entry: exit code 7, naming the entry.
    add("gemini-credential", "{\"type\":\"apikey\"");
    let ctx2 = {
        let mut c = TestContext::new();
        c.set_env("HEADJACK_KEYRING_BACKEND", "keyctl");
        c
    };
    let out = import(&ctx2, &["headjack", "--apply"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("com.headjack.cli/gemini-credential"));
    assert!(stored(&ctx2).is_empty());
    let _ = Command::new("keyctl")
        .args(["unlink", &ring, "@s"])
        .output();
}

#[test]
fn headjack_secret_service() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let _g = KEYRING.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctx = TestContext::new();
    ctx.set_env("HEADJACK_KEYRING_BACKEND", "secret-service");
    // As headjack's keyring library files it: attribute `profile`, the
    // library's item JSON as the secret (Data: base64 of the entry).
    let store = |name: &str, payload: &str| {
        use base64::Engine as _;
        let item = serde_json::json!({
            "Key": name,
            "Data": base64::engine::general_purpose::STANDARD.encode(payload),
            "Label": format!("Headjack - {name}"),
            "Description": "Headjack CLI credential",
        });
        run_stdin(
            Command::new("secret-tool").args([
                "store",
                &format!("--label=Headjack - {name}"),
                "profile",
                name,
            ]),
            &item.to_string(),
        );
    };
    let clear = || {
        for (_, name) in airlock::import::headjack::ENTRIES {
            let _ = Command::new("secret-tool")
                .args(["clear", "profile", name])
                .output();
        }
    };
    clear();
    store(
        "claude-credential",
        &entry("apikey", &agent_fixture("claude/api-key.txt")),
    );
    store(
        "codex-credential",
        &entry("apikey", &agent_fixture("codex/api-key.txt")),
    );
    let lookup = || {
        run_stdin(
            Command::new("secret-tool").args(["lookup", "profile", "claude-credential"]),
            "",
        )
    };
    let before = lookup();
    let out = import(&ctx, &["headjack"]);
    ok(&out);
    assert_no_secret(&out);
    snapshot("headjack_secret_service_dry_run", &ctx, &out);
    ok(&import(&ctx, &["headjack", "--apply"]));
    let r = get(&ctx, "claude");
    assert_eq!(r.method, Method::ApiKey);
    assert_eq!(r.secret.expose(), agent_fixture("claude/api-key.txt"));
    assert_eq!(
        get(&ctx, "codex").secret.expose(),
        agent_fixture("codex/api-key.txt")
    );
    assert_eq!(lookup(), before, "headjack's item was modified");
    clear();
}

/// A tool that was not set up here: exit code 6, saying what to do.
#[test]
fn missing_files_exit_6() {
    let ctx = TestContext::new();
    for (tool, fix) in [
        ("cloister", "cloister setup"),
        ("caw", "caw auth setup"),
        ("claude-hub", "--from"),
    ] {
        let out = import(&ctx, &[tool]);
        assert_eq!(out.status.code(), Some(6), "{tool}: {}", text(&out));
        assert!(text(&out).contains(fix), "{tool}: {}", text(&out));
    }
    let out = import(
        &ctx,
        &[
            "forage",
            "--from",
            ctx.root.path().join("nope").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
}

/// With no backend forced, every reachable one is read; an entry found in
/// both comes from the Secret Service and the other copy is listed.
#[test]
fn headjack_reads_every_reachable_backend() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") || !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let _g = KEYRING.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = TestContext::new();
    let _ = Command::new("secret-tool")
        .args(["clear", "profile", "claude-credential"])
        .output();
    run_stdin(
        Command::new("secret-tool").args([
            "store",
            "--label=t",
            "service",
            "com.headjack.cli",
            "username",
            "claude-credential",
        ]),
        &entry("apikey", &agent_fixture("claude/api-key.txt")),
    );
    let ring = run_stdin(
        Command::new("keyctl").args(["newring", "com.headjack.cli", "@s"]),
        "",
    );
    for (name, value) in [
        (
            "claude-credential",
            entry("subscription", &agent_fixture("claude/setup-token.txt")),
        ),
        (
            "gemini-credential",
            entry("apikey", &agent_fixture("gemini/api-key.txt")),
        ),
    ] {
        run_stdin(
            Command::new("keyctl").args(["padd", "user", name, &ring]),
            &value,
        );
    }
    let out = import(&ctx, &["headjack", "--json"]);
    let _ = Command::new("keyctl")
        .args(["unlink", &ring, "@s"])
        .output();
    let _ = Command::new("secret-tool")
        .args(["clear", "service", "com.headjack.cli"])
        .output();
    assert_no_secret(&out);
    let report: serde_json::Value = serde_json::from_slice(ok(&out).as_bytes()).unwrap();
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{report}");
    assert_eq!(items[0]["agent"], "claude");
    assert_eq!(items[0]["kind"], "api-key", "the Secret Service copy wins");
    assert_eq!(items[1]["agent"], "gemini");
    let skipped = report["not_imported"].to_string();
    assert!(
        skipped.contains("kernel keyring com.headjack.cli/claude-credential"),
        "{skipped}"
    );
}
