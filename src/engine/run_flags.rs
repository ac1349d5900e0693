//! The flags of `docker run` and `podman run`: which take a value.
//!
//! airlock needs this to find the image among the arguments of `airlock run`
//! (the first word that is neither a flag nor a flag's value) and to tell
//! its own flags from the engine's. The tables are the union of
//! `docker run --help` (Docker 28) and `podman run --help` (Podman 4.3);
//! no flag is boolean in one engine and value-taking in the other.
//! A flag missing here is unknown: `--flag=VALUE` (or `--flag=true`) is
//! understood whatever it is.

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A boolean flag: `--rm`, `-d` (`--flag=false` also works).
    Nothing,
    /// A flag with a value: `--name web`, `--name=web`, `-e X=1`, `-eX=1`.
    Value,
}

/// Long flags that take no value.
pub const BOOL_LONG: &[&str] = &[
    "detach",
    "disable-content-trust",
    "env-host",
    "help",
    "http-proxy",
    "init",
    "interactive",
    "no-healthcheck",
    "no-hosts",
    "oom-kill-disable",
    "passwd",
    "privileged",
    "publish-all",
    "quiet",
    "read-only",
    "read-only-tmpfs",
    "replace",
    "rm",
    "rmi",
    "rootfs",
    "sig-proxy",
    "tls-verify",
    "tty",
    "unsetenv-all",
    "use-api-socket",
];

/// Long flags that take a value.
pub const VALUE_LONG: &[&str] = &[
    "add-host",
    "annotation",
    "arch",
    "attach",
    "authfile",
    "blkio-weight",
    "blkio-weight-device",
    "cap-add",
    "cap-drop",
    "cgroup-conf",
    "cgroup-parent",
    "cgroupns",
    "cgroups",
    "chrootdirs",
    "cidfile",
    "conmon-pidfile",
    "cpu-count",
    "cpu-percent",
    "cpu-period",
    "cpu-quota",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "decryption-key",
    "detach-keys",
    "device",
    "device-cgroup-rule",
    "device-read-bps",
    "device-read-iops",
    "device-write-bps",
    "device-write-iops",
    "dns",
    "dns-option",
    "dns-search",
    "domainname",
    "entrypoint",
    "env",
    "env-file",
    "env-merge",
    "expose",
    "gidmap",
    "gpus",
    "group-add",
    "group-entry",
    "health-cmd",
    "health-interval",
    "health-on-failure",
    "health-retries",
    "health-start-interval",
    "health-start-period",
    "health-timeout",
    "hostname",
    "hostuser",
    "image-volume",
    "init-path",
    "ip",
    "ip6",
    "ipc",
    "isolation",
    "kernel-memory",
    "label",
    "label-file",
    "link",
    "link-local-ip",
    "log-driver",
    "log-opt",
    "mac-address",
    "memory",
    "memory-reservation",
    "memory-swap",
    "memory-swappiness",
    "mount",
    "name",
    "network",
    "network-alias",
    "oom-score-adj",
    "os",
    "passwd-entry",
    "personality",
    "pid",
    "pidfile",
    "pids-limit",
    "platform",
    "pod",
    "pod-id-file",
    "preserve-fd",
    "preserve-fds",
    "publish",
    "pull",
    "rdt-class",
    "requires",
    "restart",
    "retry",
    "retry-delay",
    "runtime",
    "sdnotify",
    "seccomp-policy",
    "secret",
    "security-opt",
    "shm-size",
    "shm-size-systemd",
    "stop-signal",
    "stop-timeout",
    "storage-opt",
    "subgidname",
    "subuidname",
    "sysctl",
    "systemd",
    "timeout",
    "tmpfs",
    "tz",
    "uidmap",
    "ulimit",
    "umask",
    "unsetenv",
    "user",
    "userns",
    "uts",
    "variant",
    "volume",
    "volume-driver",
    "volumes-from",
    "workdir",
];

/// Short flags that take no value (combinable: `-it`).
pub const BOOL_SHORT: &str = "diPqt";

/// Short flags that take a value (`-e X=1`, `-eX=1`, `-itu 1000`).
pub const VALUE_SHORT: &str = "acehlmpuvw";

/// The `docker run` / `podman run` table.
pub const RUN: FlagTable = FlagTable {
    bool_long: BOOL_LONG,
    value_long: VALUE_LONG,
    bool_short: BOOL_SHORT,
    value_short: VALUE_SHORT,
};

/// One engine command's flags: which take a value, which take none.
#[derive(Debug, Clone, Copy)]
pub struct FlagTable {
    /// Long flags that take no value (sorted).
    pub bool_long: &'static [&'static str],
    /// Long flags that take a value (sorted).
    pub value_long: &'static [&'static str],
    /// Short flags that take no value.
    pub bool_short: &'static str,
    /// Short flags that take a value.
    pub value_short: &'static str,
}

impl FlagTable {
    /// What the long flag `--name` takes; `None`: not a flag airlock knows.
    pub fn long(&self, name: &str) -> Option<Takes> {
        if self.bool_long.contains(&name) {
            Some(Takes::Nothing)
        } else if self.value_long.contains(&name) {
            Some(Takes::Value)
        } else {
            None
        }
    }

    /// What the short flag `-c` takes; `None`: not a flag airlock knows.
    pub fn short(&self, c: char) -> Option<Takes> {
        if self.bool_short.contains(c) {
            Some(Takes::Nothing)
        } else if self.value_short.contains(c) {
            Some(Takes::Value)
        } else {
            None
        }
    }

    /// Panics when a flag is in both tables or a long table is unsorted
    /// (the tables' unit tests call it).
    pub fn assert_well_formed(&self) {
        for f in self.bool_long {
            assert!(!self.value_long.contains(f), "{f} in both tables");
        }
        for c in self.bool_short.chars() {
            assert!(!self.value_short.contains(c), "-{c} in both tables");
        }
        assert!(self.bool_long.windows(2).all(|w| w[0] < w[1]));
        assert!(self.value_long.windows(2).all(|w| w[0] < w[1]));
    }
}

/// What the long flag `--name` of `docker run` takes.
pub fn long(name: &str) -> Option<Takes> {
    RUN.long(name)
}

/// What the short flag `-c` of `docker run` takes.
pub fn short(c: char) -> Option<Takes> {
    RUN.short(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_disjoint_and_sorted() {
        RUN.assert_well_formed();
    }

    #[test]
    fn lookups() {
        assert_eq!(long("rm"), Some(Takes::Nothing));
        assert_eq!(long("name"), Some(Takes::Value));
        assert_eq!(long("agent"), None);
        assert_eq!(short('d'), Some(Takes::Nothing));
        assert_eq!(short('e'), Some(Takes::Value));
        assert_eq!(short('x'), None);
    }
}
