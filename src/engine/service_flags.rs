//! The flags of `docker service create` (Docker 28): which take a value.
//! The `airlock swarm` counterpart of [`super::run_flags`], used the same
//! way: to find the image among the arguments and to tell airlock's own
//! flags from the engine's.

use super::run_flags::{FlagTable, Takes};

/// Long flags that take a value.
pub const VALUE_LONG: &[&str] = &[
    "cap-add",
    "cap-drop",
    "config",
    "constraint",
    "container-label",
    "credential-spec",
    "dns",
    "dns-option",
    "dns-search",
    "endpoint-mode",
    "entrypoint",
    "env",
    "env-file",
    "generic-resource",
    "group",
    "health-cmd",
    "health-interval",
    "health-retries",
    "health-start-period",
    "health-timeout",
    "host",
    "hostname",
    "isolation",
    "label",
    "limit-cpu",
    "limit-memory",
    "limit-pids",
    "log-driver",
    "log-opt",
    "max-concurrent",
    "mode",
    "mount",
    "name",
    "network",
    "placement-pref",
    "publish",
    "replicas",
    "replicas-max-per-node",
    "reserve-cpu",
    "reserve-memory",
    "restart-condition",
    "restart-delay",
    "restart-max-attempts",
    "restart-window",
    "rollback-delay",
    "rollback-failure-action",
    "rollback-max-failure-ratio",
    "rollback-monitor",
    "rollback-order",
    "rollback-parallelism",
    "secret",
    "stop-grace-period",
    "stop-signal",
    "sysctl",
    "ulimit",
    "update-delay",
    "update-failure-action",
    "update-max-failure-ratio",
    "update-monitor",
    "update-order",
    "update-parallelism",
    "user",
    "workdir",
];

/// Short flags that take a value.
pub const VALUE_SHORT: &str = "elpuw";

/// Long flags that take no value.
pub const BOOL_LONG: &[&str] = &[
    "detach",
    "help",
    "init",
    "no-healthcheck",
    "no-resolve-image",
    "quiet",
    "read-only",
    "tty",
    "with-registry-auth",
];

/// Short flags that take no value.
pub const BOOL_SHORT: &str = "dqt";

/// The `docker service create` table.
pub const SERVICE: FlagTable = FlagTable {
    bool_long: BOOL_LONG,
    value_long: VALUE_LONG,
    bool_short: BOOL_SHORT,
    value_short: VALUE_SHORT,
};

/// What the long flag `--name` of `docker service create` takes.
pub fn long(name: &str) -> Option<Takes> {
    SERVICE.long(name)
}

/// What the short flag `-c` of `docker service create` takes.
pub fn short(c: char) -> Option<Takes> {
    SERVICE.short(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_disjoint_and_sorted() {
        SERVICE.assert_well_formed();
        assert_eq!(long("replicas"), Some(Takes::Value));
        assert_eq!(long("no-resolve-image"), Some(Takes::Nothing));
        assert_eq!(short('d'), Some(Takes::Nothing));
        assert_eq!(short('e'), Some(Takes::Value));
        assert_eq!(long("agent"), None);
    }
}
