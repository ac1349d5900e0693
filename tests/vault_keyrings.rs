//! The OS keyring backends against the real thing.
//!
//! * Secret Service: gnome-keyring on a private session bus
//!   (`AIRLOCK_TEST_SECRET_SERVICE=1`):
//!   `dbus-run-session -- sh -c 'printf %s PASS | gnome-keyring-daemon --unlock --components=secrets >/dev/null; cargo test --test vault_keyrings'`
//! * Kernel keyring: inside a fresh session keyring (`AIRLOCK_TEST_KEYUTILS=1`):
//!   `keyctl session - cargo test --test vault_keyrings`
//!
//! `scripts/test.sh` sets both up. Without the variables these tests skip
//! locally and fail under `CI=true`.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use airlock::vault::keyutils::KeyutilsBackend;
use airlock::vault::secret_service::{self, SecretServiceBackend};
use airlock::vault::{Backend, BackendKind, CredentialId, Metadata, Method, Record};
use airlock::{Error, ExitCode, Secret};
use common::{CANARY, TestContext, require_real};

/// Tests of one backend share its global namespace (a `list` sees every
/// record): run them one at a time.
static SECRET_SERVICE: Mutex<()> = Mutex::new(());
static KEYUTILS: Mutex<()> = Mutex::new(());

fn serial(m: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An agent name no other run or test uses.
fn agent(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}

fn record(agent: &str, account: &str, secret: &str) -> Record {
    Record {
        id: CredentialId::new(agent, account).unwrap(),
        method: Method::Session,
        secret: Secret::from(secret),
        meta: Metadata::new("test"),
    }
}

fn mine(b: &dyn Backend, agent: &str) -> Vec<Record> {
    b.list()
        .unwrap()
        .into_iter()
        .filter(|r| r.id.agent == agent)
        .collect()
}

fn assert_no_canary(e: &Error) {
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains(CANARY),
        "secret leaked into an error: {text}"
    );
}

/// put/get/list/remove/update round trips every backend must pass.
fn round_trips(b: &dyn Backend, agent: &str) {
    let work = CredentialId::new(agent, "work").unwrap();
    let home = CredentialId::new(agent, "home").unwrap();
    assert_eq!(b.get(&work).unwrap(), None);
    assert!(!b.remove(&work).unwrap());
    assert!(mine(b, agent).is_empty());

    // Two accounts of one agent; a whole JSON document as the secret.
    let doc = format!(
        "{{\"claudeAiOauth\":{{\"accessToken\":\"{CANARY}-a\",\"refreshToken\":\"{CANARY}-r\",\"expiresAt\":1}}}}\n"
    );
    let mut w = record(agent, "work", &doc);
    w.meta.label = Some("work laptop".into());
    w.meta.settings.insert("project".into(), "p1".into());
    let h = record(agent, "home", &format!("sk-ant-oat01-{CANARY}"));
    b.put(w.clone()).unwrap();
    b.put(h.clone()).unwrap();
    assert_eq!(b.get(&work).unwrap().as_ref(), Some(&w));
    assert_eq!(b.get(&home).unwrap().as_ref(), Some(&h));
    assert_eq!(mine(b, agent), vec![h.clone(), w.clone()], "sorted by id");

    // Overwriting replaces, it does not add.
    let w2 = record(agent, "work", &format!("{CANARY}-rotated"));
    b.put(w2.clone()).unwrap();
    assert_eq!(b.get(&work).unwrap().as_ref(), Some(&w2));
    assert_eq!(mine(b, agent).len(), 2);

    // update: modify, then remove through it.
    b.update(&work, &mut |cur| {
        let mut r = cur.expect("present");
        r.secret = Secret::from(format!("{CANARY}-updated"));
        Ok(Some(r))
    })
    .unwrap();
    assert_eq!(
        b.get(&work).unwrap().unwrap().secret.expose(),
        format!("{CANARY}-updated")
    );
    b.update(&work, &mut |cur| {
        assert!(cur.is_some());
        Ok(None)
    })
    .unwrap();
    assert_eq!(b.get(&work).unwrap(), None);
    // update of a missing record can create it
    b.update(&work, &mut |cur| {
        assert!(cur.is_none());
        Ok(Some(w.clone()))
    })
    .unwrap();
    assert_eq!(b.get(&work).unwrap().as_ref(), Some(&w));
    // an error from the closure changes nothing
    let e = b
        .update(&work, &mut |_| Err(Error::Other("nope".into())))
        .unwrap_err();
    assert_eq!(e.to_string(), "nope");
    assert_eq!(b.get(&work).unwrap().as_ref(), Some(&w));

    assert!(b.remove(&home).unwrap());
    assert!(!b.remove(&home).unwrap());
    assert_eq!(b.get(&home).unwrap(), None);
    assert!(b.remove(&work).unwrap());
    assert!(mine(b, agent).is_empty());
}

/// Writers of different accounts in threads, each with its own connection (as separate
/// processes would have), lose nothing; concurrent updates of one record
/// are serialized.
fn concurrent(make: Arc<dyn Fn() -> Box<dyn Backend> + Send + Sync>, agent: &str) {
    const WRITERS: usize = 6;
    const EACH: usize = 4;
    let threads: Vec<_> = (0..WRITERS)
        .map(|t| {
            let make = make.clone();
            let agent = agent.to_owned();
            std::thread::spawn(move || {
                let b = make();
                for i in 0..EACH {
                    b.put(record(
                        &agent,
                        &format!("w{t}-{i}"),
                        &format!("{CANARY}-{t}-{i}"),
                    ))
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let b = make();
    let all = mine(b.as_ref(), agent);
    assert_eq!(all.len(), WRITERS * EACH);
    for t in 0..WRITERS {
        for i in 0..EACH {
            let id = CredentialId::new(agent, &format!("w{t}-{i}")).unwrap();
            let r = all.iter().find(|r| r.id == id).expect("written record");
            assert_eq!(r.secret.expose(), format!("{CANARY}-{t}-{i}"));
        }
    }

    // A counter incremented by several updaters at once.
    let counter = CredentialId::new(agent, "counter").unwrap();
    b.put(record(agent, "counter", "0")).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let make = make.clone();
            let counter = counter.clone();
            std::thread::spawn(move || {
                let b = make();
                for _ in 0..5 {
                    b.update(&counter, &mut |cur| {
                        let mut r = cur.expect("counter exists");
                        let n: u32 = r.secret.expose().parse().unwrap();
                        r.secret = Secret::from((n + 1).to_string());
                        Ok(Some(r))
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(b.get(&counter).unwrap().unwrap().secret.expose(), "20");

    for r in mine(b.as_ref(), agent) {
        assert!(b.remove(&r.id).unwrap());
    }
    assert!(mine(b.as_ref(), agent).is_empty());
}

/// Runs `cmd` with `stdin` (secrets go through stdin, never argv); returns stdout.
fn run(cmd: &mut Command, stdin: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------- Secret Service

fn ss_backend(ctx: &TestContext) -> SecretServiceBackend {
    SecretServiceBackend::connect_with_lock_dir(Some(ctx.runtime_dir.clone())).unwrap()
}

#[test]
fn secret_service_round_trips() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let _g = serial(&SECRET_SERVICE);
    let ctx = TestContext::new();
    let b = ss_backend(&ctx);
    assert_eq!(b.kind(), BackendKind::SecretService);
    assert!(b.persistent());
    round_trips(&b, &agent("ss-rt"));
}

#[test]
fn secret_service_items_are_real_keyring_items() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let _g = serial(&SECRET_SERVICE);
    let ctx = TestContext::new();
    let b = ss_backend(&ctx);
    let agent = agent("ss-tool");
    let r = record(&agent, "work", &format!("{CANARY}-tool"));
    b.put(r.clone()).unwrap();

    // secret-tool sees the item with airlock's label and attributes (it
    // prints the attributes on stderr)…
    let out = Command::new("secret-tool")
        .args([
            "search",
            "--all",
            "application",
            "airlock",
            "airlock-agent",
            &agent,
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("label = airlock: {agent} (work)")),
        "{text}"
    );
    assert!(text.contains("attribute.airlock-account = work"), "{text}");
    // …and its secret is the record's JSON.
    let secret = run(
        Command::new("secret-tool").args([
            "lookup",
            "application",
            "airlock",
            "airlock-agent",
            &agent,
            "airlock-account",
            "work",
        ]),
        "",
    );
    let json: serde_json::Value = serde_json::from_str(&secret).unwrap();
    assert_eq!(json["secret"], format!("{CANARY}-tool"));
    assert_eq!(json["account"], "work");

    // What secret-tool stores, airlock reads (another client, same item).
    let edited = secret.replace(&format!("{CANARY}-tool"), &format!("{CANARY}-edited"));
    run(
        Command::new("secret-tool").args([
            "store",
            "--label",
            &format!("airlock: {agent} (work)"),
            "application",
            "airlock",
            "airlock-agent",
            &agent,
            "airlock-account",
            "work",
        ]),
        &edited,
    );
    let id = CredentialId::new(&agent, "work").unwrap();
    assert_eq!(
        b.get(&id).unwrap().unwrap().secret.expose(),
        format!("{CANARY}-edited")
    );
    assert_eq!(mine(&b, &agent).len(), 1, "replaced, not duplicated");
    assert!(b.remove(&id).unwrap());
    let gone = Command::new("secret-tool")
        .args(["lookup", "application", "airlock", "airlock-agent", &agent])
        .output()
        .unwrap();
    assert!(gone.stdout.is_empty());
}

#[test]
fn secret_service_ignores_other_applications_and_reports_damage_without_secrets() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let _g = serial(&SECRET_SERVICE);
    let ctx = TestContext::new();
    let b = ss_backend(&ctx);
    let agent = agent("ss-foreign");
    // Another application's item with look-alike attributes, and an item
    // that claims application=airlock but has no airlock attributes.
    run(
        Command::new("secret-tool").args([
            "store",
            "--label",
            "someone else",
            "application",
            "other-app",
            "airlock-agent",
            &agent,
            "airlock-account",
            "work",
        ]),
        CANARY,
    );
    run(
        Command::new("secret-tool").args([
            "store",
            "--label",
            "half",
            "application",
            "airlock",
            "owner",
            &agent,
        ]),
        CANARY,
    );
    let work = CredentialId::new(&agent, "work").unwrap();
    assert_eq!(b.get(&work).unwrap(), None);
    assert!(mine(&b, &agent).is_empty());
    b.put(record(&agent, "work", "mine")).unwrap();
    assert_eq!(b.get(&work).unwrap().unwrap().secret.expose(), "mine");
    assert!(b.remove(&work).unwrap());
    // The other application's item is untouched.
    let theirs = run(
        Command::new("secret-tool").args([
            "lookup",
            "application",
            "other-app",
            "airlock-agent",
            &agent,
        ]),
        "",
    );
    assert_eq!(theirs, CANARY);

    // A damaged airlock item: a clear Corrupt error, no secret in it.
    run(
        Command::new("secret-tool").args([
            "store",
            "--label",
            "damaged",
            "application",
            "airlock",
            "airlock-agent",
            &agent,
            "airlock-account",
            "broken",
        ]),
        &format!("{{\"not a record\": \"{CANARY}\""),
    );
    let broken = CredentialId::new(&agent, "broken").unwrap();
    let e = b.get(&broken).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Corrupt, "{e}");
    assert_no_canary(&e);
    let e = b.list().unwrap_err();
    assert_no_canary(&e);
    assert!(
        b.remove(&broken).unwrap(),
        "a damaged item can still be removed"
    );

    for attrs in [
        vec!["application", "other-app", "airlock-agent", &agent],
        vec!["application", "airlock", "owner", &agent],
    ] {
        Command::new("secret-tool")
            .arg("clear")
            .args(attrs)
            .status()
            .unwrap();
    }
}

#[test]
fn secret_service_concurrent_writers_lose_nothing() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let _g = serial(&SECRET_SERVICE);
    let ctx = TestContext::new();
    let dir = ctx.runtime_dir.clone();
    concurrent(
        Arc::new(move || {
            Box::new(SecretServiceBackend::connect_with_lock_dir(Some(dir.clone())).unwrap())
        }),
        &agent("ss-conc"),
    );
}

// ---------------------------------------------------------------- probe

/// Runs `probe()` in a child process (this test binary) with the given
/// session-bus environment; returns its verdict and how long it took.
fn probe_in_child(bus: Option<&str>) -> (String, Duration) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
        .env("AIRLOCK_TEST_PROBE_CHILD", "1")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR");
    if let Some(addr) = bus {
        cmd.env("DBUS_SESSION_BUS_ADDRESS", addr);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no probe result: {stdout}"))
        .to_owned();
    let (ms, verdict) = line.split_once(' ').unwrap();
    (
        verdict.to_owned(),
        Duration::from_micros(ms.parse().unwrap()),
    )
}

/// Not a test on its own: the child half of `probe_in_child`.
#[test]
fn probe_child() {
    if std::env::var_os("AIRLOCK_TEST_PROBE_CHILD").is_none() {
        return;
    }
    let start = Instant::now();
    let r = secret_service::probe();
    let us = start.elapsed().as_micros();
    match r {
        Ok(()) => println!("PROBE {us} ok"),
        Err(why) => println!("PROBE {us} err: {why}"),
    }
}

#[test]
fn probe_is_fast_and_says_why_without_a_service() {
    // No bus at all.
    let (v, t) = probe_in_child(None);
    assert!(v.contains("DBUS_SESSION_BUS_ADDRESS is not set"), "{v}");
    assert!(t < Duration::from_millis(100), "{t:?}");

    // A bus address where nothing listens.
    let ctx = TestContext::new();
    let path = ctx.root.path().join("no-bus");
    let (v, t) = probe_in_child(Some(&format!("unix:path={}", path.display())));
    assert!(
        v.starts_with("err: cannot connect to the D-Bus session bus"),
        "{v}"
    );
    assert!(t < Duration::from_millis(100), "{t:?}");

    // Something that accepts connections and never answers.
    let sock = ctx.root.path().join("mute-bus");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            keep.lock().unwrap().push(s);
        }
    });
    let (v, t) = probe_in_child(Some(&format!("unix:path={}", sock.display())));
    assert!(v.contains("did not answer within 300 ms"), "{v}");
    assert!(t < Duration::from_millis(600), "{t:?}");
}

#[test]
fn probe_finds_the_running_secret_service() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap();
    let (v, t) = probe_in_child(Some(&bus));
    assert_eq!(v, "ok");
    eprintln!("probe with gnome-keyring running: {t:?}");
    assert!(t < Duration::from_millis(300), "{t:?}");
}

#[test]
fn probe_on_a_bus_without_secret_service_says_so() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    // A second, private bus with no keyring daemon on it.
    let ctx = TestContext::new();
    let sock = ctx.root.path().join("bare-bus");
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork"])
        .arg(format!("--address=unix:path={}", sock.display()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (v, t) = probe_in_child(Some(&format!("unix:path={}", sock.display())));
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(v.contains("no Secret Service is running"), "{v}");
    eprintln!("probe on a bus without a Secret Service: {t:?}");
    assert!(t < Duration::from_millis(100), "{t:?}");
}

// ---------------------------------------------------------------- keyutils

fn ku_backend(ctx: &TestContext) -> KeyutilsBackend {
    KeyutilsBackend::open_with_lock_dir(Some(ctx.runtime_dir.clone())).unwrap()
}

#[test]
fn keyutils_round_trips() {
    if !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let _g = serial(&KEYUTILS);
    let ctx = TestContext::new();
    let b = ku_backend(&ctx);
    assert_eq!(b.kind(), BackendKind::Keyutils);
    assert!(
        !b.persistent(),
        "the kernel keyring does not survive a reboot"
    );
    assert!(b.location().contains("lost at reboot"), "{}", b.location());
    round_trips(&b, &agent("ku-rt"));
}

#[test]
fn keyutils_keys_are_real_kernel_keys() {
    if !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let _g = serial(&KEYUTILS);
    let ctx = TestContext::new();
    let b = ku_backend(&ctx);
    let agent = agent("ku-tool");
    b.put(record(&agent, "work", &format!("{CANARY}-tool")))
        .unwrap();

    let ring = run(
        Command::new("keyctl").args(["search", "@s", "keyring", "airlock"]),
        "",
    );
    let key = run(
        Command::new("keyctl").args([
            "search",
            ring.trim(),
            "user",
            &format!("airlock:{agent}:work"),
        ]),
        "",
    );
    let payload = run(Command::new("keyctl").args(["pipe", key.trim()]), "");
    let json: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(json["secret"], format!("{CANARY}-tool"));

    // A key written by keyctl (payload on stdin) is read by airlock.
    let edited = payload.replace(&format!("{CANARY}-tool"), &format!("{CANARY}-edited"));
    run(
        Command::new("keyctl").args([
            "padd",
            "user",
            &format!("airlock:{agent}:work"),
            ring.trim(),
        ]),
        &edited,
    );
    let id = CredentialId::new(&agent, "work").unwrap();
    assert_eq!(
        b.get(&id).unwrap().unwrap().secret.expose(),
        format!("{CANARY}-edited")
    );
    assert_eq!(mine(&b, &agent).len(), 1);

    // Foreign keys in the ring are ignored; damaged ones are reported
    // without their content.
    run(
        Command::new("keyctl").args(["padd", "user", &format!("other:{agent}:work"), ring.trim()]),
        CANARY,
    );
    assert_eq!(mine(&b, &agent).len(), 1);
    run(
        Command::new("keyctl").args([
            "padd",
            "user",
            &format!("airlock:{agent}:broken"),
            ring.trim(),
        ]),
        &format!("{{\"{CANARY}\""),
    );
    let broken = CredentialId::new(&agent, "broken").unwrap();
    let e = b.get(&broken).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Corrupt, "{e}");
    assert_no_canary(&e);
    assert_no_canary(&b.list().unwrap_err());
    assert!(b.remove(&broken).unwrap());
    assert!(b.remove(&id).unwrap());
    let other = run(
        Command::new("keyctl").args([
            "search",
            ring.trim(),
            "user",
            &format!("other:{agent}:work"),
        ]),
        "",
    );
    run(
        Command::new("keyctl").args(["unlink", other.trim(), ring.trim()]),
        "",
    );
    assert!(mine(&b, &agent).is_empty());
}

#[test]
fn keyutils_refuses_oversized_records_clearly() {
    if !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let _g = serial(&KEYUTILS);
    let ctx = TestContext::new();
    let b = ku_backend(&ctx);
    let agent = agent("ku-big");
    let big = format!("{CANARY}{}", "x".repeat(40_000));
    let e = b.put(record(&agent, "big", &big)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Backend);
    assert!(
        e.to_string().contains("32767 bytes a kernel key can hold"),
        "{e}"
    );
    assert_no_canary(&e);
    assert!(mine(&b, &agent).is_empty());
}

#[test]
fn keyutils_concurrent_writers_lose_nothing() {
    if !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let _g = serial(&KEYUTILS);
    let ctx = TestContext::new();
    let dir = ctx.runtime_dir.clone();
    concurrent(
        Arc::new(move || Box::new(KeyutilsBackend::open_with_lock_dir(Some(dir.clone())).unwrap())),
        &agent("ku-conc"),
    );
}

/// A locked keyring that needs a password prompt: a clear backend error,
/// at once (the prompt is dismissed, never left waiting). Runs in a child
/// process on its own bus with its own gnome-keyring, so locking it does not
/// disturb the other tests.
#[test]
fn secret_service_locked_keyring_is_a_clear_error() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let ctx = TestContext::new();
    // Wait until the daemon owns its bus name: a call made before that
    // D-Bus-activates a second daemon, which races the first on the files.
    let script = "printf %s PASS | gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
                  for i in $(seq 100); do \
                    dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
                      org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets \
                      | grep -q true && break; sleep 0.05; done; \
                  exec \"$0\" --exact secret_service_locked_child --nocapture --test-threads=1";
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script])
        .arg(std::env::current_exe().unwrap())
        .env("AIRLOCK_TEST_LOCKED_CHILD", "1")
        .env("XDG_DATA_HOME", ctx.root.path().join("keyrings"))
        .env("AIRLOCK_RUNTIME_DIR", &ctx.runtime_dir)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("LOCKED-CHILD-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The child half of `secret_service_locked_keyring_is_a_clear_error`.
#[test]
fn secret_service_locked_child() {
    if std::env::var_os("AIRLOCK_TEST_LOCKED_CHILD").is_none() {
        return;
    }
    let ctx = TestContext::new();
    let b = ss_backend(&ctx);
    let agent = agent("ss-locked");
    let id = CredentialId::new(&agent, "work").unwrap();
    b.put(record(&agent, "work", CANARY)).unwrap();

    let conn = zbus::blocking::Connection::session().unwrap();
    let login =
        zbus::zvariant::ObjectPath::try_from("/org/freedesktop/secrets/collection/login").unwrap();
    conn.call_method(
        Some("org.freedesktop.secrets"),
        "/org/freedesktop/secrets",
        Some("org.freedesktop.Secret.Service"),
        "Lock",
        &(vec![login],),
    )
    .unwrap();

    let start = Instant::now();
    let e = b.get(&id).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(e.exit_code(), ExitCode::Backend, "{e}");
    let text = e.to_string();
    assert!(text.contains("locked"), "{text}");
    assert!(text.contains("gnome-keyring-daemon --unlock"), "{text}");
    assert_no_canary(&e);
    let e = b.put(record(&agent, "home", CANARY)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Backend, "{e}");
    assert_no_canary(&e);
    println!("LOCKED-CHILD-OK");
}

// ---------------------------------------------------------------- selection, through the CLI

fn doctor_json(ctx: &TestContext, bus: Option<&str>) -> serde_json::Value {
    let mut cmd = ctx.cmd();
    cmd.args(["doctor", "--json"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    if let Some(b) = bus {
        cmd.env("DBUS_SESSION_BUS_ADDRESS", b);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn without_a_keyring_the_file_is_chosen_and_the_reason_given() {
    let mut ctx = TestContext::new();
    ctx.unset_env("AIRLOCK_KEYRING_BACKEND");
    let v = doctor_json(&ctx, None);
    assert_eq!(v["vault"]["backend"], "file");
    assert!(
        v["vault"]["why"]
            .as_str()
            .unwrap()
            .contains("DBUS_SESSION_BUS_ADDRESS is not set"),
        "{v}"
    );
}

#[test]
fn a_running_secret_service_is_chosen_automatically() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let mut ctx = TestContext::new();
    ctx.unset_env("AIRLOCK_KEYRING_BACKEND");
    let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap();
    let v = doctor_json(&ctx, Some(&bus));
    assert_eq!(v["vault"]["backend"], "secret-service", "{v}");
    assert_eq!(v["vault"]["persistent"], true);
}

#[test]
fn keyutils_is_used_only_when_asked_and_says_it_is_not_persistent() {
    if !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let mut ctx = TestContext::new();
    ctx.set_env("AIRLOCK_KEYRING_BACKEND", "keyutils");
    let v = doctor_json(&ctx, None);
    assert_eq!(v["vault"]["backend"], "keyutils", "{v}");
    assert_eq!(v["vault"]["persistent"], false);
    assert!(
        v["vault"]["location"]
            .as_str()
            .unwrap()
            .contains("lost at reboot"),
        "{v}"
    );
}

// ---------------------------------------------------------------- separate processes

/// Several airlock processes (this test binary, re-run) write different
/// accounts and update one shared counter at the same time.
fn concurrent_processes(backend: &str, ctx: &TestContext, b: &dyn Backend) {
    let agent = agent(&format!("{backend}-procs"));
    b.put(record(&agent, "counter", "0")).unwrap();
    let children: Vec<_> = (0..4)
        .map(|n| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
                .env("AIRLOCK_TEST_WRITER_CHILD", backend)
                .env("AIRLOCK_TEST_WRITER_AGENT", &agent)
                .env("AIRLOCK_TEST_WRITER_N", n.to_string())
                .env("AIRLOCK_TEST_WRITER_LOCKS", &ctx.runtime_dir)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("WRITER-OK"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let all = mine(b, &agent);
    assert_eq!(all.len(), 4 * 5 + 1, "every account of every process");
    let counter = CredentialId::new(&agent, "counter").unwrap();
    assert_eq!(b.get(&counter).unwrap().unwrap().secret.expose(), "20");
    for r in all {
        b.remove(&r.id).unwrap();
    }
}

/// The child half of `concurrent_processes`.
#[test]
fn writer_child() {
    let Ok(kind) = std::env::var("AIRLOCK_TEST_WRITER_CHILD") else {
        return;
    };
    let agent = std::env::var("AIRLOCK_TEST_WRITER_AGENT").unwrap();
    let n = std::env::var("AIRLOCK_TEST_WRITER_N").unwrap();
    let locks = std::env::var_os("AIRLOCK_TEST_WRITER_LOCKS").map(Into::into);
    let b: Box<dyn Backend> = match kind.as_str() {
        "ss" => Box::new(SecretServiceBackend::connect_with_lock_dir(locks).unwrap()),
        _ => Box::new(KeyutilsBackend::open_with_lock_dir(locks).unwrap()),
    };
    let counter = CredentialId::new(&agent, "counter").unwrap();
    for i in 0..5 {
        b.put(record(
            &agent,
            &format!("p{n}-{i}"),
            &format!("{CANARY}-{n}-{i}"),
        ))
        .unwrap();
        b.update(&counter, &mut |cur| {
            let mut r = cur.expect("counter exists");
            let v: u32 = r.secret.expose().parse().unwrap();
            r.secret = Secret::from((v + 1).to_string());
            Ok(Some(r))
        })
        .unwrap();
    }
    println!("WRITER-OK");
}

#[test]
fn secret_service_concurrent_processes_lose_nothing() {
    if !require_real("AIRLOCK_TEST_SECRET_SERVICE") {
        return;
    }
    let _g = serial(&SECRET_SERVICE);
    let ctx = TestContext::new();
    concurrent_processes("ss", &ctx, &ss_backend(&ctx));
}

#[test]
fn keyutils_concurrent_processes_lose_nothing() {
    if !require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let _g = serial(&KEYUTILS);
    let ctx = TestContext::new();
    concurrent_processes("ku", &ctx, &ku_backend(&ctx));
}
