//! No secret reaches the logs: every file-vault operation, including the
//! failing ones, runs with a TRACE-level subscriber capturing into a buffer,
//! and the buffer must not contain the canary secret or the passphrase.
//!
//! A test binary of its own, because the subscriber is process-global.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::Secret;
use airlock::vault::file::format::KdfParams;
use airlock::vault::file::{FileBackend, FileOptions, Passphrase};
use airlock::vault::{Backend, CredentialId, Metadata, Method, Record};
use common::{CANARY, PASSPHRASE};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn backend(path: &Path, pass: &str) -> FileBackend {
    FileBackend::open(FileOptions {
        path: path.to_path_buf(),
        passphrase: Passphrase::Provided(pass.into()),
        key_cache: Some(Duration::from_secs(30)),
    })
    .unwrap()
    .with_new_vault_params(KdfParams::FLOOR)
}

fn rec(spec: &str, secret: &str) -> Record {
    Record {
        id: CredentialId::parse(spec).unwrap(),
        method: Method::Session,
        secret: Secret::from(secret),
        meta: Metadata::new("test"),
    }
}

#[test]
fn trace_logs_never_contain_the_secret_or_passphrase() {
    let buf = Buf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = d.path().join("v/vault.airlock");
    let mut errors = Vec::new();

    let b = backend(&path, PASSPHRASE);
    b.put(rec("claude", &format!("{{\"accessToken\":\"{CANARY}\"}}")))
        .unwrap();
    b.put(rec("codex", CANARY)).unwrap();
    let warm = backend(&path, PASSPHRASE);
    assert!(
        warm.get(&CredentialId::parse("claude").unwrap())
            .unwrap()
            .is_some()
    );
    warm.update(&CredentialId::parse("codex").unwrap(), &mut |r| {
        let mut r = r.unwrap();
        r.secret = Secret::from(format!("{CANARY}-2"));
        Ok(Some(r))
    })
    .unwrap();
    assert_eq!(warm.list().unwrap().len(), 2);
    warm.lock().unwrap();

    // The failures: wrong passphrase, tampered file, unsafe permissions.
    let wrong = backend(&path, "wrong passphrase");
    errors.push(wrong.list().unwrap_err());
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 20] ^= 1;
    fs::write(&path, &bad).unwrap();
    errors.push(backend(&path, PASSPHRASE).list().unwrap_err());
    fs::write(&path, &good).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    errors.push(backend(&path, PASSPHRASE).list().unwrap_err());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        backend(&path, PASSPHRASE)
            .remove(&CredentialId::parse("codex").unwrap())
            .unwrap()
    );
    backend(&path, PASSPHRASE).lock().unwrap();

    // Errors are what the CLI prints (at every verbosity).
    for e in &errors {
        tracing::error!("{e}");
        tracing::debug!("{e:?}");
    }
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    eprintln!("{logs}");
    // The capture works and the file vault does log at these levels.
    assert!(logs.contains("derived the vault key"), "{logs}");
    assert!(logs.contains("vault written"), "{logs}");
    assert!(logs.contains("wrong passphrase"), "{logs}");
    assert!(!logs.contains(CANARY), "secret in logs:\n{logs}");
    assert!(!logs.contains(PASSPHRASE), "passphrase in logs:\n{logs}");
}
