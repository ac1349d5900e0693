//! Shared test harness: a [`TestContext`] owns a temporary HOME and every
//! airlock directory, builds `airlock` commands with a clean environment, and
//! redacts paths, times and secrets for snapshots.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A canary secret: tests fail if it shows up where it must not.
pub const CANARY: &str = "CANARYx7Q2zV9";

/// The passphrase tests use for the encrypted-file vault.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Whether a real component is required (CI) rather than optional.
pub fn require_real(var: &str) -> bool {
    if std::env::var_os(var).is_some_and(|v| v == "1") {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("{var}=1 is not set in CI: scripts/test.sh must bring this component up");
    }
    eprintln!("skipping: {var} is not set (run scripts/test.sh to test against the real thing)");
    false
}

/// The test image that runs as root (built by scripts/build-test-images.sh).
pub fn root_image() -> String {
    std::env::var("AIRLOCK_TEST_IMAGE_ROOT")
        .unwrap_or_else(|_| "localhost/airlock-test/agents:root".into())
}

/// The test image that runs as uid 1000 with HOME=/home/agent.
pub fn user_image() -> String {
    std::env::var("AIRLOCK_TEST_IMAGE_USER")
        .unwrap_or_else(|_| "localhost/airlock-test/agents:user".into())
}

/// The busybox-only test image.
pub fn busybox() -> String {
    std::env::var("AIRLOCK_TEST_IMAGE_BUSYBOX")
        .unwrap_or_else(|_| "localhost/airlock-test/busybox:latest".into())
}

/// Asserts that a command exited 0 (showing its output otherwise) and
/// returns its stdout.
pub fn ok(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A context for `engine` whose runtime directory (sandbox and shared
/// session directories) is on a tmpfs, as in production; `tag` keeps
/// concurrent tests of one binary apart.
pub fn tmpfs_context(engine: &str, tag: &str) -> TestContext {
    let mut ctx = TestContext::new();
    ctx.runtime_dir = PathBuf::from(format!(
        "/dev/shm/airlock-{tag}-{}-{engine}-{}",
        std::process::id(),
        ctx.root.path().file_name().unwrap().to_string_lossy()
    ));
    ctx.set_env("AIRLOCK_ENGINE", engine);
    ctx
}

/// Gives `ctx` a Claude credential the resolution chain finds in its
/// secret-file step: a fake setup token (with [`CANARY`], `tag` telling
/// tests apart) in a 0600 file named by `config.toml`.
pub fn claude_secret_file(ctx: &TestContext, tag: &str) {
    use std::os::unix::fs::PermissionsExt;
    let secret = ctx.root.path().join("claude-token");
    std::fs::write(
        &secret,
        format!("sk-ant-oat01-{CANARY}-{tag}-AAAAAAAAAAAAAAAA"),
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        format!("[agents.claude]\nsecret_file = {secret:?}\n"),
    )
    .unwrap();
}

/// Proxy mode against a mock upstream: the proxy `ctx` starts sends
/// Claude's API traffic to `origin`, trusting `ca_pem`, and the vault holds
/// the Claude setup-token `token` (stored with `airlock auth … --from-file`).
pub fn claude_token_behind_proxy(ctx: &mut TestContext, origin: &str, ca_pem: &str, token: &str) {
    credential_behind_proxy(ctx, "claude", "token", (origin, ca_pem), token);
}

/// Proxy mode against a mock upstream for `agent`: the proxy `ctx` starts
/// sends the agent's API traffic to `origin` (`AIRLOCK_PROXY_UPSTREAM_*`),
/// trusting `ca_pem` (`AIRLOCK_PROXY_CA_FILE`), and the vault holds
/// `credential` as `method` (stored with `airlock auth … --from-file`).
pub fn credential_behind_proxy(
    ctx: &mut TestContext,
    agent: &str,
    method: &str,
    (origin, ca_pem): (&str, &str),
    credential: &str,
) {
    let ca = ctx.root.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    ctx.set_env(
        &format!("AIRLOCK_PROXY_UPSTREAM_{}", agent.to_uppercase()),
        origin,
    );
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    let f = ctx.root.path().join("credential");
    std::fs::write(&f, credential).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", agent, "--method", method, "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
    std::fs::remove_file(&f).unwrap();
}

/// An OpenAI API key for Codex and a Gemini API key (both with [`CANARY`]
/// and `tag`), stored for proxy mode against the mock at `origin`
/// ([`credential_behind_proxy`]). Returns (Codex's key, Gemini's key).
pub fn codex_and_gemini_keys_behind_proxy(
    ctx: &mut TestContext,
    tag: &str,
    mock: (&str, &str),
) -> (String, String) {
    let codex = format!("sk-proj-{CANARY}-{tag}-{}", "k".repeat(40));
    let gemini = format!("AIza{CANARY}{tag}{}", "g".repeat(30));
    credential_behind_proxy(ctx, "codex", "api-key", mock, &codex);
    credential_behind_proxy(ctx, "gemini", "api-key", mock, &gemini);
    (codex, gemini)
}

/// The genuine `codex exec` (an API key) and `gemini -p` run once each:
/// the command-line forms the proxy tests drive them with.
pub const CODEX_EXEC: &str = "codex exec --skip-git-repo-check hi </dev/null";
/// See [`CODEX_EXEC`].
pub const GEMINI_P: &str = "GEMINI_CLI_TRUST_WORKSPACE=true gemini -p hi </dev/null";

/// A shell script that first looks for the real keys of
/// [`codex_and_gemini_keys_behind_proxy`] in the container (its
/// environment, airlock's directories, `$HOME`, `/tmp`: by their tails,
/// never the canary, which would land in `docker inspect` with the
/// command), then runs [`CODEX_EXEC`] and [`GEMINI_P`] in /tmp, each answer
/// on a line of its own (`codex: …`, `gemini: …`); see
/// [`assert_codex_and_gemini_answered`].
pub fn codex_and_gemini_script() -> String {
    let (k, g) = ("k".repeat(40), "g".repeat(30));
    format!(
        "if grep -rs -e {k} -e {g} /proc/self/environ /proc/1/environ /run/airlock /run/airlock-in \"$HOME\" /tmp 2>/dev/null | head -1 | grep -q .; then echo CREDENTIAL-IN-CONTAINER; fi; cd /tmp; echo \"codex: $({CODEX_EXEC})\"; echo \"gemini: $({GEMINI_P})\""
    )
}

/// A shell script running the genuine `claude -p`, then [`CODEX_EXEC`] and
/// [`GEMINI_P`] in /tmp, their answers on lines of their own (`codex: …`,
/// `gemini: …`; see [`assert_line_answered`]).
pub fn three_agents_script() -> String {
    format!(
        "claude -p hi; cd /tmp; echo \"codex: $({CODEX_EXEC})\"; echo \"gemini: $({GEMINI_P})\""
    )
}

/// The line `AGENT: …` of a script's output (as [`codex_and_gemini_script`]
/// prints) holds `reply`.
pub fn assert_line_answered(out: &std::process::Output, agent: &str, reply: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("{agent}: ")) && l.contains(reply)),
        "{agent} did not answer: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Claude subscription session (`.credentials.json`) with these tokens,
/// its expiry far ahead.
pub fn claude_session(access: &str, refresh: &str) -> String {
    serde_json::json!({"claudeAiOauth": {
        "accessToken": access,
        "refreshToken": refresh,
        "expiresAt": 4_102_444_800_000u64,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }})
    .to_string()
}

/// A Gemini Google login (the vault's `{"oauth_creds", "google_accounts"}`)
/// with `access` as its access token, valid for an hour (nothing refreshes
/// it in a test); its refresh token is the canary and `access`, then
/// `-refresh`.
pub fn gemini_session(access: &str) -> String {
    let expiry = jiff::Timestamp::now().as_millisecond() + 3_600_000;
    serde_json::json!({"oauth_creds": {"access_token": access,
        "refresh_token": format!("1//{CANARY}-{access}-refresh"), "scope": "openid",
        "token_type": "Bearer", "id_token": "h.p.s", "expiry_date": expiry},
        "google_accounts": {"active": "dev@example.com", "old": []}})
    .to_string()
}

/// Both CLIs of [`codex_and_gemini_script`] printed `reply` (the mock's
/// answer), and neither printed the canary.
pub fn assert_codex_and_gemini_answered(out: &std::process::Output, reply: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for agent in ["codex", "gemini"] {
        assert_line_answered(out, agent, reply);
    }
    assert!(!stdout.contains("CREDENTIAL-IN-CONTAINER"), "{stdout}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
}

/// Stores a session document for `agent` with `airlock auth … --from-file`.
pub fn store_session(ctx: &TestContext, agent: &str, doc: &str) {
    let f = ctx.root.path().join("session.json");
    std::fs::write(&f, doc).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", agent, "--method", "session", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
}

/// The genuine Codex CLI binary: `AIRLOCK_TEST_CODEX`, or the copy
/// `scripts/build-test-images.sh` caches under `~/.cache/airlock-test/npm`.
pub fn codex_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AIRLOCK_TEST_CODEX") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let npm = PathBuf::from(home).join(".cache/airlock-test/npm");
    for e in std::fs::read_dir(npm).ok()?.flatten() {
        let p = e.path().join(
            "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
        );
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// The genuine Claude Code CLI binary: `AIRLOCK_TEST_CLAUDE`, or the copy
/// `scripts/build-test-images.sh` caches under `~/.cache/airlock-test/npm`.
pub fn claude_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AIRLOCK_TEST_CLAUDE") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let npm = PathBuf::from(home).join(".cache/airlock-test/npm");
    for e in std::fs::read_dir(npm).ok()?.flatten() {
        let p = e
            .path()
            .join("node_modules/@anthropic-ai/claude-code-linux-x64/claude");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// Polls `f` every 200 ms until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The compose command line to use: `docker-compose` (v1 or v2
/// standalone), else the `docker compose` plugin; `None` (after saying so)
/// when neither is installed.
pub fn compose_command() -> Option<Vec<&'static str>> {
    let works = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["docker-compose"]) {
        Some(vec!["docker-compose"])
    } else if works(&["docker", "compose"]) {
        Some(vec!["docker", "compose"])
    } else {
        eprintln!(
            "skipping the compose test: neither docker-compose nor docker compose is installed"
        );
        None
    }
}

/// Temporary HOME and airlock directories, removed on drop.
pub struct TestContext {
    pub root: tempfile::TempDir,
    pub home: PathBuf,
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

impl TestContext {
    pub fn new() -> Self {
        // Not under /tmp: Codex warns about temporary dirs; use target/.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(base).unwrap();
        let root = tempfile::Builder::new()
            .prefix("airlock-test-")
            .tempdir_in(base)
            .unwrap();
        let r = root.path().to_path_buf();
        let dir = |n: &str| {
            let p = r.join(n);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let home = dir("home");
        TestContext {
            config_dir: r.join("config"),
            data_dir: r.join("data"),
            state_dir: r.join("state"),
            runtime_dir: r.join("runtime"),
            home,
            root,
            env: vec![
                ("AIRLOCK_KEYRING_BACKEND".into(), "file".into()),
                ("AIRLOCK_KEYRING_PASSWORD".into(), PASSPHRASE.into()),
                // New file vaults use the cheapest allowed Argon2id cost, so a
                // command costs milliseconds, not a quarter of a second
                // (docs/vault-format.md, "Default cost").
                ("AIRLOCK_VAULT_KDF".into(), "m=1024,t=1,p=1".into()),
            ],
        }
    }

    /// Sets (or replaces) an environment variable for every command.
    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
    }

    /// Removes an environment variable from every command.
    pub fn unset_env(&mut self, k: &str) {
        self.env.retain(|(key, _)| key != k);
    }

    /// An `airlock` command with a clean environment pointing at this context.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("AIRLOCK_CONFIG_DIR", &self.config_dir)
            .env("AIRLOCK_DATA_DIR", &self.data_dir)
            .env("AIRLOCK_STATE_DIR", &self.state_dir)
            .env("AIRLOCK_RUNTIME_DIR", &self.runtime_dir)
            .env("NO_COLOR", "1")
            .current_dir(&self.home);
        for var in [
            "DBUS_SESSION_BUS_ADDRESS",
            "CONTAINERS_CONF",
            "XDG_RUNTIME_DIR",
            "DOCKER_HOST",
        ] {
            if let Some(v) = std::env::var_os(var) {
                c.env(var, v);
            }
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Filters for insta: this context's paths, then timestamps.
    pub fn filters(&self) -> Vec<(String, String)> {
        let mut f = vec![
            (
                regex_escape(&self.root.path().display().to_string()),
                "[ROOT]".to_string(),
            ),
            (
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)".to_string(),
                "[TIME]".to_string(),
            ),
            (CANARY.to_string(), "[CANARY-LEAKED]".to_string()),
        ];
        f.push((
            regex_escape(env!("CARGO_BIN_EXE_airlock")),
            "[AIRLOCK]".into(),
        ));
        f
    }
}

impl Drop for TestContext {
    /// A runtime directory outside `root` (on /dev/shm, [`tmpfs_context`])
    /// goes with the context too, also when the test failed. A background
    /// airlock process that is just finishing (a waiter unregistering its
    /// sandbox) may write into a directory while it is being removed, which
    /// then fails (not empty): tried again for a moment. Once a directory is
    /// gone, airlock's background processes do not make it again.
    fn drop(&mut self) {
        let mut dirs = vec![self.root.path().to_path_buf()];
        if !self.runtime_dir.starts_with(self.root.path()) {
            dirs.push(self.runtime_dir.clone());
        }
        for d in dirs {
            for _ in 0..20 {
                let _ = std::fs::remove_dir_all(&d);
                if std::fs::symlink_metadata(&d).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Scans every process's command line until stopped; returns offenders.
pub fn cmdline_watcher(
    needle: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut hits = Vec::new();
        let mut scans = 0u32;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) || scans == 0 {
            scans += 1;
            let Ok(rd) = std::fs::read_dir("/proc") else {
                break;
            };
            for e in rd.flatten() {
                let p = e.path().join("cmdline");
                if let Ok(b) = std::fs::read(&p) {
                    let s = String::from_utf8_lossy(&b).replace('\0', " ");
                    if s.contains(&needle) {
                        hits.push(format!("{}: {s}", p.display()));
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        hits
    })
}

/// Files under `dirs` (recursively) that contain `needle`, skipping `except`.
pub fn grep_dirs(needle: &str, dirs: &[PathBuf], except: &[PathBuf]) -> Vec<String> {
    let mut args = vec!["-rlsa".to_owned(), "--fixed-strings".to_owned()];
    for e in except {
        if let Some(n) = e.file_name() {
            args.push(format!("--exclude-dir={}", n.to_string_lossy()));
        }
    }
    args.push("--".into());
    args.push(needle.into());
    let existing: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
    if existing.is_empty() {
        return Vec::new();
    }
    let out = Command::new("grep")
        .args(&args)
        .args(existing)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !except.iter().any(|e| Path::new(l).starts_with(e)))
        .collect()
}

/// Runs `cmd` with `input` on its stdin; returns its output.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The `agent:account` of each object in an `airlock accounts --json`
/// output (or any JSON array of objects with `agent` and `account`).
pub fn account_ids(json: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["agent"].as_str().unwrap(),
                r["account"].as_str().unwrap()
            )
        })
        .collect()
}

/// A Codex ChatGPT session (`auth.json`) with `access` as its access token,
/// for `account`, refreshed just now (so nothing refreshes it in the test);
/// its refresh token is the canary and `access`, then `-refresh`.
pub fn codex_session(access: &str, account: &str) -> String {
    use base64::Engine as _;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        serde_json::json!({"email": "dev@example.com", "https://api.openai.com/auth":
            {"chatgpt_plan_type": "pro", "chatgpt_account_id": account}})
        .to_string(),
    );
    serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": {
        "id_token": format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig"),
        "access_token": access, "refresh_token": format!("{CANARY}-{access}-refresh"),
        "account_id": account}, "last_refresh": jiff::Timestamp::now().to_string()})
    .to_string()
}
