//! The Debian package as a user gets it (issue 13): `scripts/package-deb.sh`
//! builds it with cargo-deb (here from the debug binary the tests use, to
//! spare a release build), and it is installed with `dpkg -i` into a clean Debian 12
//! container (debootstrap minbase, `scripts/build-debian-image.sh`) with no
//! network: `airlock --version`, `airlock doctor`, the man pages and the
//! completions work there, and `dpkg -r` removes every file it installed.

mod common;

use std::path::Path;
use std::process::Command;

use common::require_real;

fn script(name: &str, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts").join(name))
        .args(args)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[test]
fn the_deb_installs_and_runs_in_a_clean_debian_container() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let image = script("build-debian-image.sh", &["docker"]);
    // the binary cargo built for the tests (target/debug/airlock): building
    // again without the dev-dependencies' features would rebuild the tree
    let deb = script("package-deb.sh", &["--profile", "dev", "--no-build"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root.join(&deb), dir.path().join("airlock.deb")).unwrap();

    let check = r#"
set -e
dpkg -i /deb/airlock.deb >/dev/null
echo "version: $(airlock --version)"
set +e
airlock doctor > /tmp/doctor.out 2>&1
echo "doctor-exit: $?"
set -e
cat /tmp/doctor.out
for f in /usr/bin/airlock /usr/share/man/man1/airlock.1.gz /usr/share/man/man1/airlock-run.1.gz \
         /usr/share/bash-completion/completions/airlock /usr/share/zsh/vendor-completions/_airlock \
         /usr/share/fish/vendor_completions.d/airlock.fish /usr/share/doc/airlock/copyright; do
  test -f "$f" && echo "installed: $f"
done
zcat /usr/share/man/man1/airlock-run.1.gz | grep -q '^.TH airlock-run 1' && echo "man: airlock-run(1)"
grep -q 'complete -F' /usr/share/bash-completion/completions/airlock && echo "completion: bash"
dpkg -r airlock >/dev/null
test ! -e /usr/bin/airlock && test ! -e /usr/share/man/man1/airlock.1.gz && echo "removed: clean"
"#;
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/deb:ro", dir.path().display()))
        .arg(&image)
        .args(["sh", "-c", check])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("version: airlock {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    // no engine and no keyring in the clean container: doctor says so and
    // exits 11 (a check found problems), with the encrypted file as vault
    assert!(stdout.contains("doctor-exit: 11"), "{stdout}");
    assert!(stdout.contains("vault backend: file"), "{stdout}");
    assert!(
        stdout.contains("FAIL  container engine: neither docker nor podman"),
        "{stdout}"
    );
    for f in [
        "/usr/bin/airlock",
        "/usr/share/man/man1/airlock.1.gz",
        "/usr/share/man/man1/airlock-run.1.gz",
        "/usr/share/bash-completion/completions/airlock",
        "/usr/share/zsh/vendor-completions/_airlock",
        "/usr/share/fish/vendor_completions.d/airlock.fish",
    ] {
        assert!(stdout.contains(&format!("installed: {f}")), "{f}: {stdout}");
    }
    assert!(stdout.contains("man: airlock-run(1)"), "{stdout}");
    assert!(stdout.contains("completion: bash"), "{stdout}");
    assert!(stdout.contains("removed: clean"), "{stdout}");
}
