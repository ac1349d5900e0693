//! Cost of the encrypted-file vault: `cargo bench --bench vault`.
//!
//! Measures, with the real (default) Argon2id parameters:
//!
//! * the key derivation alone;
//! * a cold unlock: a new backend with no cached key reads and decrypts the vault;
//! * a warm get and a warm put: a new backend (as in a new `airlock` command)
//!   whose key comes from the kernel key cache, with no passphrase at all;
//! * the same operations on an already unlocked backend (one process);
//! * the baseline: `fsutil::write_atomic` of the same number of bytes, in the
//!   same directory, in the same run.
//!
//! Run it inside a session keyring (`keyctl session - cargo bench --bench
//! vault`) so the warm figures use the kernel cache; without one they are
//! reported as unavailable. Figures are medians; see bench/README.md.

use std::path::Path;
use std::time::{Duration, Instant};

use airlock::Secret;
use airlock::fsutil;
use airlock::vault::file::format::KdfParams;
use airlock::vault::file::{FileBackend, FileOptions, Passphrase};
use airlock::vault::{Backend, CredentialId, Metadata, Method, Record};

const PASS: &str = "bench passphrase, not a secret";

fn backend(path: &Path, pass: Passphrase, cache: bool) -> FileBackend {
    FileBackend::open(FileOptions {
        path: path.to_path_buf(),
        passphrase: pass,
        key_cache: cache.then(|| Duration::from_secs(120)),
    })
    .expect("backend")
}

fn record(spec: &str, secret: String) -> Record {
    Record {
        id: CredentialId::parse(spec).expect("id"),
        method: Method::Session,
        secret: Secret::new(secret),
        meta: Metadata::new("bench"),
    }
}

/// Median and 90th percentile of `n` runs of `f`, in milliseconds.
fn measure(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(t[n / 2]), ms(t[(n * 9 / 10).min(n - 1)]))
}

fn row(what: &str, (median, p90): (f64, f64), n: usize) {
    println!("{what:<52} {median:>10.3} ms {p90:>10.3} ms {n:>6}");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too:
    // keep that run short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (cold_n, warm_n, put_n) = if quick { (1, 3, 3) } else { (7, 300, 60) };
    let params = KdfParams::DEFAULT;

    let root = tempfile::Builder::new()
        .prefix("bench-vault-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let dir = root.path().join("data");
    fsutil::ensure_private_dir(&dir).expect("dir");
    let path = dir.join("vault.airlock");

    // A realistic vault: an OAuth session document, a setup-token, an API key.
    let oauth = format!(
        "{{\"claudeAiOauth\":{{\"accessToken\":\"sk-ant-oat01-{}\",\"refreshToken\":\"sk-ant-ort01-{}\",\"expiresAt\":1790000000000,\"scopes\":[\"user:inference\",\"user:profile\"],\"subscriptionType\":\"max\"}}}}",
        "a".repeat(100),
        "b".repeat(100)
    );
    let setup = backend(&path, Passphrase::Provided(PASS.into()), false);
    setup.put(record("claude:work", oauth)).expect("put");
    setup
        .put(record(
            "claude:ci",
            format!("sk-ant-oat01-{}", "c".repeat(95)),
        ))
        .expect("put");
    setup
        .put(record("codex", format!("sk-proj-{}", "d".repeat(150))))
        .expect("put");
    let file_len = std::fs::metadata(&path).expect("vault").len() as usize;
    let id = CredentialId::parse("claude:work").expect("id");

    println!("airlock file vault benchmark");
    println!(
        "argon2id params: m={} KiB, t={}, p={}; vault file: {file_len} bytes; dir: {}",
        params.m_cost,
        params.t_cost,
        params.p_cost,
        dir.display()
    );
    println!(
        "{:<52} {:>13} {:>13} {:>6}",
        "operation", "median", "p90", "runs"
    );

    let salt = [7u8; 16];
    row(
        "argon2id key derivation alone",
        measure(cold_n, || {
            params.derive(PASS.as_bytes(), &salt).expect("derive");
        }),
        cold_n,
    );
    row(
        "cold unlock: new backend, no cache, get",
        measure(cold_n, || {
            let b = backend(&path, Passphrase::Provided(PASS.into()), false);
            assert!(b.get(&id).expect("get").is_some());
        }),
        cold_n,
    );

    // Fill the kernel cache, then check that a backend without any
    // passphrase can open the vault.
    backend(&path, Passphrase::Provided(PASS.into()), true)
        .get(&id)
        .expect("unlock");
    let cache_works = backend(&path, Passphrase::Unavailable, true)
        .get(&id)
        .is_ok();
    if cache_works {
        row(
            "warm get: new backend, key from kernel cache",
            measure(warm_n, || {
                let b = backend(&path, Passphrase::Unavailable, true);
                assert!(b.get(&id).expect("get").is_some());
            }),
            warm_n,
        );
    } else {
        println!(
            "warm get/put via the kernel cache: unavailable (no usable keyring; run under `keyctl session -`)"
        );
    }

    let unlocked = backend(&path, Passphrase::Provided(PASS.into()), false);
    unlocked.get(&id).expect("unlock");
    row(
        "warm get: same backend (key in process)",
        measure(warm_n, || {
            assert!(unlocked.get(&id).expect("get").is_some());
        }),
        warm_n,
    );

    let mut i = 0u64;
    let mut next = || {
        i += 1;
        record("gemini", format!("AIza-{i:0>35}"))
    };
    let warm_put = if cache_works {
        let m = measure(put_n, || {
            let b = backend(&path, Passphrase::Unavailable, true);
            b.put(next()).expect("put");
        });
        row("warm put: new backend, key from kernel cache", m, put_n);
        Some(m)
    } else {
        None
    };
    let same_put = measure(put_n, || unlocked.put(next()).expect("put"));
    row("warm put: same backend (key in process)", same_put, put_n);

    let file_len = std::fs::metadata(&path).expect("vault").len() as usize;
    let bytes = vec![0x5au8; file_len];
    let baseline_path = dir.join("baseline");
    let base = measure(put_n, || {
        fsutil::write_atomic(&baseline_path, &bytes, 0o600).expect("write");
    });
    row(
        &format!("baseline: fsutil::write_atomic of {file_len} bytes"),
        base,
        put_n,
    );
    let (put, label) = match warm_put {
        Some(m) => (m.0, "warm put (kernel cache)"),
        None => (same_put.0, "warm put (same backend)"),
    };
    println!(
        "ratio {label} / baseline write_atomic: {:.2}x (medians)",
        put / base.0
    );
    backend(&path, Passphrase::Unavailable, true)
        .lock()
        .expect("lock");
}
