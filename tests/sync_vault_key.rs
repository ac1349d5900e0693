//! The encrypted-file vault and the long-running sync helpers: the
//! `airlock sync` watcher and the `run -d` waiter get the vault key from the
//! key cache at their start (never the passphrase: it is not in their
//! environment) and keep it, so that a refresh written after the cache
//! expired still reaches the vault record, and the hand-back at the
//! container's exit succeeds; `airlock lock` makes both drop it.
//! `docs/rotation.md` §9 item 7.
//!
//! Needs a container engine (AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1)
//! and the kernel keyring (AIRLOCK_TEST_KEYUTILS=1, under `keyctl session`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{CANARY, TestContext, busybox, ok, require_real, wait_until};
use serde_json::{Value, json};

const LATER: i64 = 4_102_444_800_000; // 2100-01-01T00:00:00Z
const HOUR: i64 = 3_600_000;

/// A Claude session document; `rt` tells generations apart.
fn session(rt: &str, expires_ms: i64) -> String {
    json!({
        "claudeAiOauth": {
            "accessToken": format!("sk-ant-oat01-{CANARY}-{rt}"),
            "refreshToken": format!("sk-ant-ort01-{CANARY}-{rt}"),
            "expiresAt": expires_ms,
            "scopes": ["user:inference", "user:profile"],
        }
    })
    .to_string()
}

/// Writes the credential file in the shared directory as Claude does
/// (temp file, rename).
fn refresh(doc: &str) -> String {
    format!(
        "d=${{CLAUDE_SECURESTORAGE_CONFIG_DIR:?}}; printf '%s' '{doc}' > \"$d/.credentials.json.tmp.1\" && mv \"$d/.credentials.json.tmp.1\" \"$d/.credentials.json\""
    )
}

fn write_config(dir: &Path, key_cache_seconds: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("[vault]\nkey_cache_seconds = {key_cache_seconds}\n"),
    )
    .unwrap();
}

/// The stored record's expiry, read with the passphrase but through a
/// config without key cache: reading does not warm the cache the helpers
/// must do without.
fn stored_expiry(ctx: &TestContext, nocache: &Path) -> Value {
    let out = ctx
        .cmd()
        .env("AIRLOCK_CONFIG_DIR", nocache)
        .args(["accounts", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    v[0]["expires_at"].clone()
}

/// Whether a command without the passphrase (and without a terminal) finds
/// the vault locked: the key cache is cold.
fn cache_cold(ctx: &TestContext) -> bool {
    let out = ctx
        .cmd()
        .env_remove("AIRLOCK_KEYRING_PASSWORD")
        .args(["accounts", "--json"])
        .output()
        .unwrap();
    out.status.code() == Some(3)
}

fn environ(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn shared_dirs(rt: &Path) -> usize {
    std::fs::read_dir(rt.join("sync"))
        .map(|r| r.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

fn registrations(state: &Path) -> Vec<Value> {
    std::fs::read_dir(state.join("sync/sandboxes"))
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn helpers_keep_the_vault_key(engine: &str) {
    let mut ctx = TestContext::new();
    // The shared directories live on a tmpfs, as in production.
    ctx.runtime_dir = PathBuf::from(format!(
        "/dev/shm/airlock-vaultkey-{}-{engine}-{}",
        std::process::id(),
        ctx.root.path().file_name().unwrap().to_string_lossy()
    ));
    ctx.set_env("AIRLOCK_ENGINE", engine);
    let ttl = 3;
    write_config(&ctx.config_dir, ttl);
    let nocache = ctx.root.path().join("config-nocache");
    write_config(&nocache, 0);
    let sig = ctx.root.path().join("sig");
    std::fs::create_dir_all(&sig).unwrap();

    // Stored with the passphrase: the key is cached for `ttl` seconds.
    let f = ctx.root.path().join("session.json");
    std::fs::write(&f, session("v1", LATER)).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", "claude", "--method", "session", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());

    // The container refreshes when told to (after the cache expired), and
    // once more right before it exits.
    let script = format!(
        "until [ -e /sig/go ]; do sleep 0.1; done; {}; until [ -e /sig/stop ]; do sleep 0.1; done; {}",
        refresh(&session("v2", LATER + HOUR)),
        refresh(&session("v3", LATER + 2 * HOUR)),
    );
    let out = ctx
        .cmd()
        .args(["run", "--agent", "claude", "--", "-d", "--rm"])
        .args(["--network", "none", "-v"])
        .arg(format!("{}:/sig", sig.display()))
        .arg(busybox())
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let container = ok(&out).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(CANARY), "{stderr}");
    assert!(
        !stderr.contains("warning"),
        "no hand-over warning: {stderr}"
    );

    // Neither helper has the passphrase in its environment.
    let daemon_pid: u32 = std::fs::read_to_string(ctx.state_dir.join("sync/daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let regs = registrations(&ctx.state_dir);
    assert_eq!(regs.len(), 1, "{regs:?}");
    let waiter_pid = regs[0]["pid"].as_u64().unwrap() as u32;
    for pid in [daemon_pid, waiter_pid] {
        let env = environ(pid);
        assert!(env.contains("AIRLOCK_STATE_DIR="), "{env}");
        assert!(
            !env.contains("AIRLOCK_KEYRING_PASSWORD"),
            "pid {pid}: {env}"
        );
        assert!(!env.contains("correct horse"), "pid {pid}");
    }

    // Once the cache has expired, a refresh in the sandbox still reaches
    // the vault record: the watcher kept the key.
    wait_until(
        "the key cache to expire",
        Duration::from_secs(ttl + 10),
        || cache_cold(&ctx),
    );
    std::fs::write(sig.join("go"), "").unwrap();
    wait_until(
        "the refresh to reach the vault",
        Duration::from_secs(20),
        || stored_expiry(&ctx, &nocache) == "2100-01-01T01:00:00Z",
    );
    assert!(cache_cold(&ctx), "nothing re-warmed the cache");

    // Without a watcher, the last refresh can only reach the vault through
    // the waiter's hand-back at the container's exit.
    assert!(
        Command::new("kill")
            .arg(daemon_pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    wait_until("the watcher to exit", Duration::from_secs(10), || {
        !alive(daemon_pid)
    });
    std::fs::write(sig.join("stop"), "").unwrap();
    wait_until("the waiter to hand back", Duration::from_secs(30), || {
        !alive(waiter_pid)
    });
    assert!(registrations(&ctx.state_dir).is_empty());
    assert_eq!(shared_dirs(&ctx.runtime_dir), 0, "shared dir removed");
    assert_eq!(stored_expiry(&ctx, &nocache), "2100-01-01T02:00:00Z");

    let log = std::fs::read_to_string(ctx.state_dir.join("sync/daemon.log")).unwrap_or_default();
    assert!(log.contains("vault unlocked"), "{log}");
    assert!(!log.contains(CANARY), "{log}");
    let _ = Command::new(engine).args(["rm", "-f", &container]).output();
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `airlock lock` while a `-d` sandbox runs: the watcher and the waiter
/// drop the key they hold, so nothing writes the vault any more (the
/// session stays in the shared directory, as documented).
fn lock_reaches_the_helpers(engine: &str) {
    let mut ctx = TestContext::new();
    ctx.runtime_dir = PathBuf::from(format!(
        "/dev/shm/airlock-vaultlock-{}-{engine}-{}",
        std::process::id(),
        ctx.root.path().file_name().unwrap().to_string_lossy()
    ));
    ctx.set_env("AIRLOCK_ENGINE", engine);
    let ttl = 3;
    write_config(&ctx.config_dir, ttl);
    let nocache = ctx.root.path().join("config-nocache");
    write_config(&nocache, 0);
    let sig = ctx.root.path().join("sig");
    std::fs::create_dir_all(&sig).unwrap();
    let f = ctx.root.path().join("session.json");
    std::fs::write(&f, session("v1", LATER)).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", "claude", "--method", "session", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
    let script = format!(
        "until [ -e /sig/go ]; do sleep 0.1; done; {}; until [ -e /sig/stop ]; do sleep 0.1; done",
        refresh(&session("v2", LATER + HOUR)),
    );
    let out = ctx
        .cmd()
        .args(["run", "--agent", "claude", "--", "-d", "--rm"])
        .args(["--network", "none", "-v"])
        .arg(format!("{}:/sig", sig.display()))
        .arg(busybox())
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let container = ok(&out).trim().to_owned();
    let waiter_pid = registrations(&ctx.state_dir)[0]["pid"].as_u64().unwrap() as u32;
    let log = || std::fs::read_to_string(ctx.state_dir.join("sync/daemon.log")).unwrap_or_default();
    wait_until("the watcher to unlock", Duration::from_secs(10), || {
        log().contains("vault unlocked")
    });
    wait_until(
        "the key cache to expire",
        Duration::from_secs(ttl + 10),
        || cache_cold(&ctx),
    );
    let out = ctx.cmd().arg("lock").output().unwrap();
    ok(&out);
    wait_until(
        "the watcher to drop the key",
        Duration::from_secs(10),
        || log().contains("airlock lock: vault key dropped"),
    );
    std::fs::write(sig.join("go"), "").unwrap();
    wait_until("the watcher to try", Duration::from_secs(10), || {
        log().contains("sync failed")
    });
    assert_eq!(stored_expiry(&ctx, &nocache), "2100-01-01T00:00:00Z");
    std::fs::write(sig.join("stop"), "").unwrap();
    wait_until("the waiter to exit", Duration::from_secs(30), || {
        !alive(waiter_pid)
    });
    // The waiter could not hand back either: the session is kept in the
    // shared directory for the next unlocked registration.
    assert_eq!(shared_dirs(&ctx.runtime_dir), 1, "shared dir kept");
    assert_eq!(stored_expiry(&ctx, &nocache), "2100-01-01T00:00:00Z");
    assert!(!log().contains(CANARY));
    let _ = Command::new(engine).args(["rm", "-f", &container]).output();
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_lock_makes_the_helpers_drop_the_vault_key() {
    if require_real("AIRLOCK_TEST_DOCKER") && require_real("AIRLOCK_TEST_KEYUTILS") {
        lock_reaches_the_helpers("docker");
    }
}

#[test]
fn docker_helpers_keep_the_vault_key_after_the_cache_expired() {
    if require_real("AIRLOCK_TEST_DOCKER") && require_real("AIRLOCK_TEST_KEYUTILS") {
        helpers_keep_the_vault_key("docker");
    }
}

#[test]
fn podman_helpers_keep_the_vault_key_after_the_cache_expired() {
    if require_real("AIRLOCK_TEST_PODMAN") && require_real("AIRLOCK_TEST_KEYUTILS") {
        helpers_keep_the_vault_key("podman");
    }
}
