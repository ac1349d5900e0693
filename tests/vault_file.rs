//! The encrypted-file vault: behaviour, bad input, crashes and concurrency.
//!
//! Crash and concurrency tests run writers in child processes: this test
//! binary re-invokes itself with `AIRLOCK_VAULT_CHILD` set, which turns the
//! `child_process` test into a writer (it does nothing otherwise).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use airlock::error::{Error, ExitCode};
use airlock::vault::file::format::KdfParams;
use airlock::vault::file::{FileBackend, FileOptions, KDF_ENV, Passphrase};
use airlock::vault::{Backend, CredentialId, Metadata, Method, Record};
use airlock::{Result, Secret};
use common::{CANARY, PASSPHRASE};

/// Cheap parameters so the suite stays fast (the floor of `AIRLOCK_VAULT_KDF`).
const FAST: KdfParams = KdfParams::FLOOR;
const CHILD_ENV: &str = "AIRLOCK_VAULT_CHILD";

fn backend_with(path: &Path, pass: Passphrase, cache: Option<Duration>) -> FileBackend {
    FileBackend::open(FileOptions {
        path: path.to_path_buf(),
        passphrase: pass,
        key_cache: cache,
    })
    .unwrap()
    .with_new_vault_params(FAST)
}

/// A backend with the test passphrase and no key cache.
fn backend(path: &Path) -> FileBackend {
    backend_with(path, Passphrase::Provided(PASSPHRASE.into()), None)
}

fn rec(spec: &str, secret: &str) -> Record {
    Record {
        id: CredentialId::parse(spec).unwrap(),
        method: Method::ApiKey,
        secret: Secret::from(secret),
        meta: Metadata::new("test"),
    }
}

fn id(spec: &str) -> CredentialId {
    CredentialId::parse(spec).unwrap()
}

fn secret_of(b: &dyn Backend, spec: &str) -> Option<String> {
    b.get(&id(spec))
        .unwrap()
        .map(|r| r.secret.expose().to_owned())
}

/// A private directory holding `vault.airlock`.
fn vault_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("vault-file-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let p = d.path().join("vault.airlock");
    (d, p)
}

/// Bytes and mtime, to prove a file was left as it was.
fn snapshot(p: &Path) -> (Vec<u8>, SystemTime) {
    (
        fs::read(p).unwrap(),
        fs::symlink_metadata(p).unwrap().modified().unwrap(),
    )
}

fn assert_no_leak(e: &Error) {
    let msg = format!("{e} {e:?}");
    assert!(!msg.contains(CANARY), "secret in error: {msg}");
    assert!(!msg.contains(PASSPHRASE), "passphrase in error: {msg}");
}

/// Runs get, list and put against a bad vault: each must fail with `code`,
/// say `needle`, and leave the file's bytes and mtime unchanged.
fn assert_refused(b: &FileBackend, path: &Path, code: ExitCode, needle: &str) {
    let before = snapshot(path);
    let results: [(&str, Result<()>); 3] = [
        ("get", b.get(&id("claude")).map(|_| ())),
        ("list", b.list().map(|_| ())),
        ("put", b.put(rec("claude:new", CANARY))),
    ];
    for (op, r) in results {
        let e = r.expect_err(op);
        assert_eq!(e.exit_code(), code, "{op}: {e}");
        assert!(e.to_string().contains(needle), "{op}: {e}");
        assert_no_leak(&e);
    }
    assert_eq!(snapshot(path), before, "the vault file was modified");
}

#[test]
fn put_get_list_remove_update_round_trip() {
    let (_d, path) = vault_dir();
    let b = backend(&path);
    assert_eq!(b.list().unwrap(), vec![], "a missing vault is empty");
    assert!(!path.exists(), "reading must not create the vault");
    assert!(!b.remove(&id("claude")).unwrap());
    assert!(!path.exists(), "removing nothing must not create the vault");

    b.put(rec("codex", "sk-codex")).unwrap();
    b.put(rec("claude:work", CANARY)).unwrap();
    b.put(rec("claude:home", "sk-home")).unwrap();
    b.put(rec("claude:home", "sk-home-2")).unwrap();

    // A fresh backend (another process, in effect) sees everything.
    let b2 = backend(&path);
    let ids: Vec<String> = b2
        .list()
        .unwrap()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(ids, ["claude:home", "claude:work", "codex:default"]);
    assert_eq!(secret_of(&b2, "claude:work").as_deref(), Some(CANARY));
    assert_eq!(secret_of(&b2, "claude:home").as_deref(), Some("sk-home-2"));

    b2.update(&id("codex"), &mut |r| {
        let mut r = r.expect("codex exists");
        r.secret = Secret::from("sk-codex-2");
        Ok(Some(r))
    })
    .unwrap();
    b2.update(&id("gemini"), &mut |r| {
        assert!(r.is_none());
        Ok(Some(rec("gemini", "AIza-x")))
    })
    .unwrap();
    b2.update(&id("claude:home"), &mut |_| Ok(None)).unwrap();
    assert!(b2.remove(&id("claude:work")).unwrap());
    assert!(!b2.remove(&id("claude:work")).unwrap());

    let b3 = backend(&path);
    let all: Vec<(String, String)> = b3
        .list()
        .unwrap()
        .into_iter()
        .map(|r| (r.id.to_string(), r.secret.expose().to_owned()))
        .collect();
    assert_eq!(
        all,
        [
            ("codex:default".to_string(), "sk-codex-2".to_string()),
            ("gemini:default".to_string(), "AIza-x".to_string())
        ]
    );
}

#[test]
fn file_is_private_encrypted_and_versioned() {
    let (d, _) = vault_dir();
    // The directory does not exist yet: it is created 0700.
    let path = d.path().join("sub/vault.airlock");
    let b = backend(&path);
    b.put(rec("claude", CANARY)).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"airlock\0");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
    let text = String::from_utf8_lossy(&bytes);
    for plain in [CANARY, "claude", "records", PASSPHRASE] {
        assert!(!text.contains(plain), "{plain:?} in the file");
    }
    assert_eq!(b.stored_params().unwrap(), Some(FAST));
    // Nothing but the vault and its lock file is left behind.
    let mut names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["vault.airlock", "vault.airlock.lock"]);
}

#[test]
fn wrong_passphrase_is_exit_3_and_leaves_the_file() {
    let (_d, path) = vault_dir();
    backend(&path).put(rec("claude", CANARY)).unwrap();
    let b = backend_with(&path, Passphrase::Provided("not it".into()), None);
    assert_refused(&b, &path, ExitCode::Locked, "wrong passphrase");
    let e = b.get(&id("claude")).unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase { .. }), "{e:?}");
    assert!(e.to_string().contains("the file is intact"), "{e}");
}

#[test]
fn no_passphrase_is_exit_3_with_the_fix() {
    let (_d, path) = vault_dir();
    let b = backend_with(&path, Passphrase::Unavailable, None);
    // No vault yet: reading needs no passphrase; creating one does.
    assert_eq!(b.list().unwrap(), vec![]);
    let e = b.put(rec("claude", CANARY)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Locked);
    assert!(!path.exists());
    backend(&path).put(rec("claude", CANARY)).unwrap();
    assert_refused(&b, &path, ExitCode::Locked, "AIRLOCK_KEYRING_PASSWORD");
}

#[test]
fn damaged_files_are_corrupt_exit_4_and_left_alone() {
    let (_d, path) = vault_dir();
    backend(&path).put(rec("claude", CANARY)).unwrap();
    let good = fs::read(&path).unwrap();
    let n = good.len();
    let flip = |i: usize| {
        let mut b = good.clone();
        b[i] ^= 0x01;
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty"),
        ("truncated header", good[..60].to_vec(), "truncated"),
        (
            "truncated body",
            good[..n - 5].to_vec(),
            "failed authentication",
        ),
        ("header only", good[..128].to_vec(), "truncated"),
        ("flipped salt byte", flip(30), "header checksum"),
        ("flipped key check byte", flip(50), "header checksum"),
        ("flipped nonce byte", flip(80), "header checksum"),
        ("flipped checksum byte", flip(100), "header checksum"),
        ("flipped body byte", flip(n - 30), "failed authentication"),
        ("flipped tag byte", flip(n - 1), "failed authentication"),
        (
            "appended byte",
            [good.clone(), vec![0]].concat(),
            "failed authentication",
        ),
        (
            "not a vault",
            b"{\"records\":[]}".to_vec(),
            "not an airlock vault",
        ),
    ];
    for (what, bytes, needle) in cases {
        fs::write(&path, &bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let b = backend(&path);
        let before = snapshot(&path);
        for r in [b.get(&id("claude")).map(|_| ()), b.put(rec("codex", "x"))] {
            let e = r.expect_err(what);
            assert_eq!(e.exit_code(), ExitCode::Corrupt, "{what}: {e}");
            assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e:?}");
            assert!(e.to_string().contains(needle), "{what}: {e}");
            assert!(e.to_string().contains("left as it is"), "{what}: {e}");
            assert_no_leak(&e);
        }
        assert_eq!(snapshot(&path), before, "{what}: file modified");
    }
}

#[test]
fn a_forged_header_with_a_fixed_checksum_is_still_caught() {
    use sha2::{Digest, Sha256};
    let (_d, path) = vault_dir();
    backend(&path).put(rec("claude", CANARY)).unwrap();
    let good = fs::read(&path).unwrap();
    let reseal = |mut b: Vec<u8>| {
        let sum = Sha256::digest(&b[..96]);
        b[96..128].copy_from_slice(&sum);
        b
    };
    // A new nonce with a valid checksum: the AEAD (header as AAD) catches it.
    let mut nonce = good.clone();
    nonce[80] ^= 1;
    fs::write(&path, reseal(nonce)).unwrap();
    assert_refused(
        &backend(&path),
        &path,
        ExitCode::Corrupt,
        "failed authentication",
    );
    // Weaker KDF parameters with a valid checksum: the key check fails.
    // Without the key this is indistinguishable from a wrong passphrase.
    let mut weaker = good.clone();
    weaker[16] = 2;
    fs::write(&path, reseal(weaker)).unwrap();
    assert_refused(&backend(&path), &path, ExitCode::Locked, "wrong passphrase");
}

#[test]
fn unknown_version_is_exit_4_and_left_alone() {
    let (_d, path) = vault_dir();
    backend(&path).put(rec("claude", CANARY)).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&7u16.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let b = backend(&path);
    assert_refused(&b, &path, ExitCode::Corrupt, "format version 7");
    let e = b.get(&id("claude")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                found: 7,
                supported: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("upgrade airlock"), "{e}");
}

#[test]
fn open_permissions_are_unsafe_exit_5() {
    let (d, path) = vault_dir();
    backend(&path).put(rec("claude", CANARY)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(&backend(&path), &path, ExitCode::Unsafe, "chmod 600");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644,
        "permissions must not be changed behind the user's back"
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert_refused(&backend(&path), &path, ExitCode::Unsafe, "chmod 700");
}

#[test]
fn another_users_file_is_unsafe_exit_5() {
    if airlock::fsutil::euid() != 0 {
        eprintln!("skipping: changing a file's owner needs root");
        return;
    }
    let (_d, path) = vault_dir();
    backend(&path).put(rec("claude", CANARY)).unwrap();
    std::os::unix::fs::chown(&path, Some(1000), Some(1000)).unwrap();
    assert_refused(
        &backend(&path),
        &path,
        ExitCode::Unsafe,
        "owned by uid 1000",
    );
}

#[test]
fn symlinked_vault_or_directory_is_unsafe_exit_5() {
    let (d, path) = vault_dir();
    let real = d.path().join("real.airlock");
    backend(&real).put(rec("claude", CANARY)).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let target_before = snapshot(&real);
    assert_refused(&backend(&path), &path, ExitCode::Unsafe, "symbolic link");
    assert_eq!(snapshot(&real), target_before);

    let linked_dir = d.path().join("linked");
    std::os::unix::fs::symlink(d.path(), &linked_dir).unwrap();
    let via = linked_dir.join("real.airlock");
    let e = backend(&via).get(&id("claude")).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Unsafe, "{e}");
    let e = backend(&via).put(rec("codex", "x")).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Unsafe, "{e}");
    assert_eq!(snapshot(&real), target_before);
}

#[test]
fn new_vaults_get_the_real_cost_unless_overridden() {
    let (_d, path) = vault_dir();
    let run = |kdf: Option<&str>| {
        let mut c = child("create-env", &path);
        c.env_remove(KDF_ENV);
        if let Some(v) = kdf {
            c.env(KDF_ENV, v);
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        text
    };
    // Refused below the floor: a usage error, and no vault.
    assert!(run(Some("m=8,t=1")).contains("error 2 "), "below the floor");
    assert!(!path.exists());
    // Honoured when creating.
    assert!(run(Some("m=2048,t=1,p=1")).contains("params m=2048,t=1,p=1"));
    // Ignored once the vault exists: its header keeps its own cost.
    assert!(run(Some("m=4096,t=2,p=1")).contains("params m=2048,t=1,p=1"));
    // Without it, a new vault gets the real default cost.
    fs::remove_file(&path).unwrap();
    let out = run(None);
    assert!(
        out.contains(&format!("params {}", KdfParams::DEFAULT)),
        "{out}"
    );
    assert!(out.contains("params m=65536,t=3,p=1"), "{out}");
}

// ---- key cache (kernel keyring) ------------------------------------------

fn keyutils() -> bool {
    common::require_real("AIRLOCK_TEST_KEYUTILS")
}

fn cached(path: &Path, pass: Passphrase) -> FileBackend {
    backend_with(path, pass, Some(Duration::from_secs(60)))
}

#[test]
fn key_cache_unlocks_warm_commands_until_lock() {
    if !keyutils() {
        return;
    }
    let (_d, path) = vault_dir();
    cached(&path, Passphrase::Provided(PASSPHRASE.into()))
        .put(rec("claude", CANARY))
        .unwrap();
    // A later command without a passphrase is served from the cache.
    let warm = cached(&path, Passphrase::Unavailable);
    assert_eq!(secret_of(&warm, "claude").as_deref(), Some(CANARY));
    warm.put(rec("codex", "sk-2")).unwrap();
    // The key is in /proc/keys under a non-secret description, with a timeout.
    let desc = airlock::vault::file::keycache::description(&path);
    let keys = fs::read_to_string("/proc/keys").unwrap();
    let line = keys
        .lines()
        .find(|l| l.contains(&desc))
        .expect("key listed");
    assert!(!line.contains("perm"), "expected a timeout, got {line}");
    // Without the cache option the cache is not consulted.
    let e = backend_with(&path, Passphrase::Unavailable, None)
        .list()
        .unwrap_err();
    assert!(matches!(e, Error::NoPassphrase { .. }), "{e:?}");
    // `airlock lock` forgets it.
    warm.lock().unwrap();
    let e = cached(&path, Passphrase::Unavailable).list().unwrap_err();
    assert!(matches!(e, Error::NoPassphrase { .. }), "{e:?}");
    // Locking twice, or a vault that was never unlocked, is fine.
    warm.lock().unwrap();
    // Invalidated keys linger in /proc/keys, flagged 'i', until collected.
    let keys = fs::read_to_string("/proc/keys").unwrap();
    for line in keys.lines().filter(|l| l.contains(&desc)) {
        let flags = line.split_whitespace().nth(1).unwrap_or("");
        assert!(flags.contains('i'), "key still live after lock: {line}");
    }
}

#[test]
fn key_cache_entry_expires() {
    if !keyutils() {
        return;
    }
    let (_d, path) = vault_dir();
    backend_with(
        &path,
        Passphrase::Provided(PASSPHRASE.into()),
        Some(Duration::from_secs(1)),
    )
    .put(rec("claude", CANARY))
    .unwrap();
    assert!(cached(&path, Passphrase::Unavailable).list().is_ok());
    std::thread::sleep(Duration::from_millis(2200));
    let e = cached(&path, Passphrase::Unavailable).list().unwrap_err();
    assert!(matches!(e, Error::NoPassphrase { .. }), "{e:?}");
}

#[test]
fn stale_cached_key_of_a_recreated_vault_is_dropped_silently() {
    if !keyutils() {
        return;
    }
    let (d, path) = vault_dir();
    cached(&path, Passphrase::Provided(PASSPHRASE.into()))
        .put(rec("claude", "old"))
        .unwrap();
    // Replace the vault with a new one (new salt, other passphrase).
    let other = d.path().join("other.airlock");
    backend_with(
        &other,
        Passphrase::Provided("second passphrase".into()),
        None,
    )
    .put(rec("claude", "new"))
    .unwrap();
    fs::rename(&other, &path).unwrap();
    // The stale key is not used; the user is asked (here: none available).
    let e = cached(&path, Passphrase::Unavailable).list().unwrap_err();
    assert!(matches!(e, Error::NoPassphrase { .. }), "{e:?}");
    // With the right passphrase it opens and the cache now holds the new key.
    let b = cached(&path, Passphrase::Provided("second passphrase".into()));
    assert_eq!(secret_of(&b, "claude").as_deref(), Some("new"));
    let warm = cached(&path, Passphrase::Unavailable);
    assert_eq!(secret_of(&warm, "claude").as_deref(), Some("new"));
    warm.lock().unwrap();
}

// ---- crash consistency and concurrency (child processes) ------------------

/// The writer run in a child process; does nothing in a normal test run.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(std::env::var("VAULT_PATH").unwrap());
    let b = backend(&path);
    let mut out = std::io::stdout().lock();
    match mode.as_str() {
        // Writes v<start>, v<start+1>, … to crash:counter until killed,
        // printing each value once put() has returned.
        "crash" => {
            let start: u64 = std::env::var("VAULT_START").unwrap().parse().unwrap();
            for i in start.. {
                b.put(rec("crash:counter", &format!("v{i}"))).unwrap();
                writeln!(out, "committed {i}").unwrap();
                out.flush().unwrap();
            }
        }
        // Waits for the go file, then stores its own accounts and bumps a
        // shared counter with update().
        "concurrent" => {
            let me: u32 = std::env::var("VAULT_WRITER").unwrap().parse().unwrap();
            let n: u32 = std::env::var("VAULT_COUNT").unwrap().parse().unwrap();
            let go = path.with_file_name("go");
            while !go.exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
            for i in 0..n {
                b.put(rec(&format!("conc:w{me}-{i}"), &format!("s{me}-{i}")))
                    .unwrap();
                b.update(&id("conc:counter"), &mut |r| {
                    let n: u64 = r
                        .as_ref()
                        .map(|r| r.secret.expose().parse().unwrap())
                        .unwrap_or(0);
                    Ok(Some(rec("conc:counter", &(n + 1).to_string())))
                })
                .unwrap();
            }
        }
        // Creates or updates the vault with no parameter override, so that
        // AIRLOCK_VAULT_KDF decides; prints the stored parameters.
        "create-env" => {
            let plain = FileBackend::open(FileOptions {
                path: path.clone(),
                passphrase: Passphrase::Provided(PASSPHRASE.into()),
                key_cache: None,
            })
            .unwrap();
            match plain.put(rec("claude", "x")) {
                Ok(()) => writeln!(out, "params {}", plain.stored_params().unwrap().unwrap()),
                Err(e) => writeln!(out, "error {} {e}", e.exit_code().code()),
            }
            .unwrap();
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child(mode: &str, path: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode)
    .env("VAULT_PATH", path)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n
}

#[test]
fn sigkill_at_random_moments_never_tears_the_vault() {
    let (_d, path) = vault_dir();
    let b = backend(&path);
    for i in 0..3 {
        b.put(rec(&format!("stable:a{i}"), &format!("{CANARY}-{i}")))
            .unwrap();
    }
    b.put(rec("crash:counter", "v0")).unwrap();
    let mut current = 0u64;
    let mut total_commits = 0;
    let rounds = 30;
    for round in 0..rounds {
        let mut c = child("crash", &path)
            .env("VAULT_START", (current + 1).to_string())
            .spawn()
            .unwrap();
        // Startup takes a few ms; then each write takes a few to tens of ms
        // (two fsyncs). Kill anywhere in that span: before the first write,
        // between writes, and (most often) in the middle of one.
        std::thread::sleep(Duration::from_micros(1_000 + random_below(150_000)));
        c.kill().unwrap(); // SIGKILL
        let status = c.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer was not killed"
        );
        let mut last = current;
        for line in BufReader::new(c.stdout.take().unwrap()).lines() {
            // libtest may print "test child_process ... " before the first line.
            if let Some((_, n)) = line.unwrap().rsplit_once("committed ") {
                last = n.parse().unwrap();
                total_commits += 1;
            }
        }
        // The vault opens, the other records are intact, and the counter
        // holds the last committed value or the one being written.
        let fresh = backend(&path);
        let all = fresh
            .list()
            .unwrap_or_else(|e| panic!("round {round}: vault unreadable after SIGKILL: {e}"));
        assert_eq!(all.len(), 4, "round {round}");
        for i in 0..3 {
            assert_eq!(
                secret_of(&fresh, &format!("stable:a{i}")).unwrap(),
                format!("{CANARY}-{i}")
            );
        }
        let v: u64 = secret_of(&fresh, "crash:counter")
            .unwrap()
            .strip_prefix('v')
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            v == last || v == last + 1,
            "round {round}: counter v{v}, last committed v{last}"
        );
        current = v;
    }
    assert!(
        total_commits >= rounds / 2,
        "too few writes happened ({total_commits}) to exercise crashes"
    );
    // Whatever temporary files the killed writers left are only temp files.
    for e in fs::read_dir(path.parent().unwrap()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "vault.airlock"
                || name == "vault.airlock.lock"
                || name.starts_with(".vault.airlock.tmp."),
            "unexpected file {name}"
        );
    }
}

#[test]
fn concurrent_writer_processes_lose_nothing() {
    let (_d, path) = vault_dir();
    let (writers, each) = (6u32, 8u32);
    let children: Vec<_> = (0..writers)
        .map(|w| {
            child("concurrent", &path)
                .env("VAULT_WRITER", w.to_string())
                .env("VAULT_COUNT", each.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    // Let them all reach the start line, then go: the vault does not exist
    // yet, so they also race to create it.
    std::thread::sleep(Duration::from_millis(300));
    fs::write(path.with_file_name("go"), b"").unwrap();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let b = backend(&path);
    let got: BTreeSet<(String, String)> = b
        .list()
        .unwrap()
        .into_iter()
        .filter(|r| r.id.account != "counter")
        .map(|r| (r.id.to_string(), r.secret.expose().to_owned()))
        .collect();
    let want: BTreeSet<(String, String)> = (0..writers)
        .flat_map(|w| (0..each).map(move |i| (format!("conc:w{w}-{i}"), format!("s{w}-{i}"))))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        secret_of(&b, "conc:counter").as_deref(),
        Some((writers * each).to_string().as_str()),
        "an update() was lost"
    );
}

/// The sync helpers' unlock never prompts (even where a prompt would be
/// allowed) and keeps the key for the backend's life; `forget_key` drops
/// it; the hand-over says when the passphrase must be passed on.
#[test]
fn unattended_unlock_never_prompts_and_keeps_the_key() {
    use airlock::vault::Handover;
    let (_d, path) = vault_dir();
    // No vault yet: nothing to unlock, nothing to hand over.
    let none = backend_with(&path, Passphrase::Prompt, None);
    none.unlock_unattended().unwrap();
    assert_eq!(none.hand_over(), Handover::Nothing);
    backend(&path).put(rec("claude", CANARY)).unwrap();

    // Locked, no cache, a prompt allowed: refused at once, no prompt.
    let b = backend_with(&path, Passphrase::Prompt, None);
    let e = b.unlock_unattended().unwrap_err();
    assert!(matches!(e, Error::NoPassphrase { .. }), "{e}");

    // From a provided passphrase without key cache: the helpers need the
    // passphrase itself.
    let b = backend(&path);
    assert_eq!(b.hand_over(), Handover::Nothing, "not unlocked yet");
    b.unlock_unattended().unwrap();
    assert_eq!(b.hand_over(), Handover::Passphrase);
}

#[test]
fn unattended_unlock_takes_the_cached_key_and_keeps_it() {
    if !keyutils() {
        return;
    }
    use airlock::vault::Handover;
    let (_d, path) = vault_dir();
    let first = cached(&path, Passphrase::Provided(PASSPHRASE.into()));
    first.put(rec("claude", CANARY)).unwrap();
    // The command that unlocked hands over through the cache.
    assert_eq!(first.hand_over(), Handover::KeyCache);
    let helper = cached(&path, Passphrase::Unavailable);
    helper.unlock_unattended().unwrap();
    // The cache goes (expiry, or `airlock lock` in another process): the
    // helper still reads and writes.
    first.lock().unwrap();
    assert_eq!(secret_of(&helper, "claude").as_deref(), Some(CANARY));
    helper.put(rec("codex", "sk-2")).unwrap();
    // Until it drops the key.
    helper.forget_key();
    let e = helper.list().unwrap_err();
    assert!(matches!(e, Error::NoPassphrase { .. }), "{e:?}");
    assert!(
        cached(&path, Passphrase::Unavailable)
            .unlock_unattended()
            .is_err()
    );
    // A command holding the key puts it back in the cache for the helpers
    // it starts (the cache expired since its unlock).
    let holder = backend_with(
        &path,
        Passphrase::Provided(PASSPHRASE.into()),
        Some(Duration::from_secs(60)),
    );
    holder.unlock_unattended().unwrap();
    holder.lock().unwrap();
    holder.unlock_unattended().unwrap();
    first.lock().unwrap();
    assert_eq!(holder.hand_over(), Handover::KeyCache);
    let late = cached(&path, Passphrase::Unavailable);
    late.unlock_unattended().unwrap();
    assert_eq!(secret_of(&late, "codex").as_deref(), Some("sk-2"));
    late.lock().unwrap();
}
