//! The passphrase prompt, driven through a real pseudo-terminal: the answer
//! is read from the terminal with echo off (it never appears in the terminal
//! output), a new vault asks twice, and a mismatch creates nothing.
//!
//! The prompting side runs in a child process (this test binary re-invoked
//! with `AIRLOCK_PROMPT_CHILD` set) whose controlling terminal is the pty.

#![cfg(target_os = "linux")]

mod common;

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::Secret;
use airlock::vault::file::format::KdfParams;
use airlock::vault::file::{FileBackend, FileOptions, Passphrase};
use airlock::vault::{Backend, CredentialId, Metadata, Method, Record};

const CHILD_ENV: &str = "AIRLOCK_PROMPT_CHILD";
/// Typed at the prompt; must never show up in the terminal output.
const TYPED: &str = "typed-CANARYx7Q2zV9-pass";

fn backend(path: &Path, pass: Passphrase) -> FileBackend {
    FileBackend::open(FileOptions {
        path: path.to_path_buf(),
        passphrase: pass,
        key_cache: None,
    })
    .unwrap()
    .with_new_vault_params(KdfParams::FLOOR)
}

fn rec() -> Record {
    Record {
        id: CredentialId::parse("claude").unwrap(),
        method: Method::ApiKey,
        secret: Secret::from("sk-x"),
        meta: Metadata::new("test"),
    }
}

/// The prompting side; does nothing in a normal test run.
#[test]
fn child_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let path = std::env::var("VAULT_PATH").unwrap();
    let b = backend(Path::new(&path), Passphrase::Prompt);
    match b.put(rec()) {
        Ok(()) => println!("RESULT ok"),
        Err(e) => println!("RESULT error {} {e}", e.exit_code().code()),
    }
}

/// A pty: the master for the test, the slave path for the child.
fn open_pty() -> (File, String) {
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes at
    // most buf.len() bytes.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt failed");
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
        let name = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        (File::from_raw_fd(m), name)
    }
}

/// Runs the child on a fresh pty, answering each prompt (in order) with the
/// given line once the prompt has appeared. Returns everything the terminal
/// showed.
fn run_on_pty(path: &Path, answers: &[(&str, &str)]) -> String {
    let (mut master, slave_name) = open_pty();
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_name)
        .unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1")
    .env("VAULT_PATH", path)
    .stdin(Stdio::from(slave.try_clone().unwrap()))
    .stdout(Stdio::from(slave.try_clone().unwrap()))
    .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // The command keeps its copies of the slave until dropped: close every
    // copy here so the master sees EOF (EIO) when the child exits.
    drop(cmd);
    drop(slave);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        let mut m = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            // Ends with EIO once the child (the last slave holder) is gone.
            while let Ok(n) = m.read(&mut b) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&b[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let mut from = 0;
    for (prompt, answer) in answers {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = text();
            if let Some(i) = t[from..].find(prompt) {
                from += i + prompt.len();
                break;
            }
            assert!(Instant::now() < deadline, "no prompt {prompt:?}; got {t:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The prompt is written just before echo is turned off: give the
        // child a moment so the answer is not typed into an echoing tty.
        std::thread::sleep(Duration::from_millis(100));
        master.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let t = text();
    assert!(status.success(), "{t}");
    t
}

fn vault() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = d.path().join("vault.airlock");
    (d, p)
}

#[test]
fn new_vault_asks_twice_without_echo() {
    let (_d, path) = vault();
    let out = run_on_pty(
        &path,
        &[
            ("New passphrase for the airlock vault", TYPED),
            ("Type it again", TYPED),
        ],
    );
    assert!(out.contains("RESULT ok"), "{out}");
    assert!(
        !out.contains("CANARY"),
        "the passphrase was echoed: {out:?}"
    );
    // The typed passphrase is the vault's passphrase.
    let b = backend(&path, Passphrase::Provided(TYPED.into()));
    assert_eq!(b.list().unwrap().len(), 1);

    // An existing vault asks once; a wrong answer is exit 3.
    let out = run_on_pty(&path, &[("Passphrase for the airlock vault", TYPED)]);
    assert!(out.contains("RESULT ok"), "{out}");
    assert!(!out.contains("Type it again"), "{out}");
    // A typo gets two more tries…
    let out = run_on_pty(
        &path,
        &[
            ("Passphrase for the airlock vault", "nope"),
            ("Wrong passphrase, try again", TYPED),
        ],
    );
    assert!(out.contains("RESULT ok"), "{out}");
    // …and three wrong answers are exit 3.
    let out = run_on_pty(
        &path,
        &[
            ("Passphrase for the airlock vault", "nope"),
            ("Passphrase for the airlock vault", "nope2"),
            ("Passphrase for the airlock vault", "nope3"),
        ],
    );
    assert!(out.contains("RESULT error 3 wrong passphrase"), "{out}");
    assert_eq!(
        out.matches("Wrong passphrase, try again").count(),
        2,
        "{out}"
    );
    assert!(!out.contains("CANARY") && !out.contains("nope"), "{out:?}");
}

#[test]
fn mismatched_confirmation_creates_nothing() {
    let (_d, path) = vault();
    let out = run_on_pty(
        &path,
        &[
            ("New passphrase for the airlock vault", TYPED),
            ("Type it again", "something-else"),
        ],
    );
    assert!(
        out.contains("RESULT error 2 the two passphrases differ"),
        "{out}"
    );
    assert!(!path.exists());
}

#[test]
fn empty_answer_is_refused() {
    let (_d, path) = vault();
    let out = run_on_pty(&path, &[("New passphrase for the airlock vault", "")]);
    assert!(
        out.contains("RESULT error 2 no passphrase was typed"),
        "{out}"
    );
    assert!(!path.exists());
}

#[test]
fn no_terminal_means_no_passphrase_exit_3() {
    let (_d, path) = vault();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1")
    .env("VAULT_PATH", &path)
    .stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe; a new session has no controlling
    // terminal, so /dev/tty cannot be opened.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RESULT error 3"), "{text}");
    assert!(text.contains("AIRLOCK_KEYRING_PASSWORD"), "{text}");
    assert!(!path.exists());
}
