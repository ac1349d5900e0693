//! The proxy process's allocator setting (docs/proxy.md, "Performance").
//!
//! glibc keeps up to 7 freed blocks of each size per thread (its tcache)
//! for the next allocation of that size. A proxy serving many connections
//! on one thread frees and allocates more than 7 blocks of a size at a time
//! (hyper's header maps and buffers, rustls's records), and each miss takes
//! the slower way through the arena: with a cache of 512 per size the
//! proxy runs about 6% fewer instructions per request (bench/README.md).
//! glibc reads the setting, `GLIBC_TUNABLES=glibc.malloc.tcache_count=N`,
//! only when a process starts, so the proxy starts itself once more with it
//! (the same process: `exec`, before any lock or socket is taken). A
//! `tcache_count` the user already set is kept; any other tunables too.

/// The tunable and the value the proxy asks for.
pub const TCACHE: &str = "glibc.malloc.tcache_count";
const COUNT: u32 = 512;

/// `GLIBC_TUNABLES` with the proxy's cache size added, or `None` when the
/// current value already sets it.
pub fn tunables(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or("");
    if current
        .split(':')
        .any(|t| t.split_once('=').is_some_and(|(k, _)| k == TCACHE))
    {
        return None;
    }
    Some(if current.is_empty() {
        format!("{TCACHE}={COUNT}")
    } else {
        format!("{current}:{TCACHE}={COUNT}")
    })
}

/// Starts this process again with the proxy's allocator setting, unless it
/// is set already. Returns only when it is set, or when that cannot be done
/// (not glibc, no path to this program, `exec` refused): then the proxy
/// runs as it is.
pub fn allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var_os("GLIBC_TUNABLES");
        // a value that is not text is the user's: left as it is
        let Some(current) = current
            .as_deref()
            .map_or(Some(None), |v| v.to_str().map(Some))
        else {
            return;
        };
        let Some(value) = tunables(current) else {
            return;
        };
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(argv0) = args.next() {
            cmd.arg0(argv0);
        }
        let err = cmd.args(args).env("GLIBC_TUNABLES", value).exec();
        tracing::debug!(error = %err, "the proxy runs with glibc's default allocator cache");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_size_is_added_to_the_users_tunables_never_over_theirs() {
        assert_eq!(
            tunables(None).as_deref(),
            Some("glibc.malloc.tcache_count=512")
        );
        assert_eq!(
            tunables(Some("")).as_deref(),
            Some("glibc.malloc.tcache_count=512")
        );
        assert_eq!(
            tunables(Some("glibc.malloc.arena_max=1")).as_deref(),
            Some("glibc.malloc.arena_max=1:glibc.malloc.tcache_count=512")
        );
        assert_eq!(tunables(Some("glibc.malloc.tcache_count=0")), None);
        assert_eq!(
            tunables(Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=9")),
            None
        );
        assert!(tunables(Some("glibc.malloc.tcache_count_x=1")).is_some());
    }
}
