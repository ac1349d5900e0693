//! The file vault through the `airlock` binary: `-vvv` output never carries
//! the secret or the passphrase, and `airlock lock` forgets the cached key.

mod common;

use std::path::Path;
use std::time::Duration;

use airlock::Secret;
use airlock::error::Error;
use airlock::vault::file::format::KdfParams;
use airlock::vault::file::{FileBackend, FileOptions, Passphrase};
use airlock::vault::{Backend, CredentialId, Metadata, Method, Record};
use common::{CANARY, PASSPHRASE, TestContext};

fn backend(path: &Path, pass: Passphrase) -> FileBackend {
    FileBackend::open(FileOptions {
        path: path.to_path_buf(),
        passphrase: pass,
        key_cache: Some(Duration::from_secs(60)),
    })
    .unwrap()
    .with_new_vault_params(KdfParams::FLOOR)
}

/// A context whose vault holds the canary.
fn context_with_canary() -> (TestContext, std::path::PathBuf) {
    let ctx = TestContext::new();
    let path = ctx.data_dir.join("vault.airlock");
    backend(&path, Passphrase::Provided(PASSPHRASE.into()))
        .put(Record {
            id: CredentialId::parse("claude").unwrap(),
            method: Method::SetupToken,
            secret: Secret::from(CANARY),
            meta: Metadata::new("test"),
        })
        .unwrap();
    (ctx, path)
}

#[test]
fn verbose_cli_output_has_no_secret() {
    let (ctx, _path) = context_with_canary();
    for args in [
        &["-vvv", "doctor"][..],
        &["-vvv", "lock"],
        &["-vvv", "doctor", "--json"],
    ] {
        let out = ctx.cmd().args(args).output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {all}");
        assert!(!all.contains(CANARY), "{args:?} leaked the secret:\n{all}");
        assert!(
            !all.contains(PASSPHRASE),
            "{args:?} leaked the passphrase:\n{all}"
        );
    }
}

#[test]
fn airlock_lock_forgets_the_cached_key() {
    if !common::require_real("AIRLOCK_TEST_KEYUTILS") {
        return;
    }
    let (ctx, path) = context_with_canary();
    // Unlocked above: a command with no passphrase is served from the cache.
    let id = CredentialId::parse("claude").unwrap();
    let warm = backend(&path, Passphrase::Unavailable).get(&id).unwrap();
    assert_eq!(warm.unwrap().secret.expose(), CANARY);

    let out = ctx.cmd().arg("lock").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));

    let e = backend(&path, Passphrase::Unavailable)
        .get(&id)
        .unwrap_err();
    assert!(matches!(e, Error::NoPassphrase { .. }), "{e:?}");
    assert_eq!(e.exit_code().code(), 3);
}
