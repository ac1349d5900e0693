//! Running the proxy: one per user, started on demand by `airlock run`
//! (like the sync watcher) or in the foreground (`airlock proxy`, e.g. as a
//! systemd user unit). It listens on 127.0.0.1 and on the container
//! bridges' host addresses (docker0, br-*, podman*, cni-podman*: where
//! `host.docker.internal` / `host.containers.internal` lead), all on one
//! port, never on 0.0.0.0; it picks up bridges that appear later, forgets
//! the grants of containers that are gone, and (when started on demand)
//! exits once no grant is left.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::registry::{self, Layout};
use super::server::{State, VaultOpener, serve};
use crate::error::{Error, Result};
use crate::fsutil::FileLock;

/// How the proxy runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Addresses to listen on; empty: 127.0.0.1 and the bridges.
    pub listen: Vec<IpAddr>,
    /// The port (0: any free one, the same on every address).
    pub port: u16,
    /// Exit after this long without any grant (on-demand mode).
    pub exit_when_idle: Option<Duration>,
    /// The sync watcher's layout: where to ask for a refresh after an
    /// upstream 401 ([`crate::sync::demand`]); `None`: never.
    pub sync: Option<crate::sync::Layout>,
    /// Also serve the metrics over HTTP here (loopback only); the unix
    /// socket `<state>/proxy/metrics.sock` serves them always.
    pub metrics_listen: Option<SocketAddr>,
}

/// The grants' engine for a Swarm service (`airlock swarm --rotation
/// proxy`), found by the service label `airlock.sandbox=<id>`.
pub const SWARM: &str = "swarm";

/// Whether a proxy holds `layout`'s daemon lock.
pub fn running(layout: &Layout) -> bool {
    match FileLock::open(&layout.daemon_lock()) {
        Ok(f) => match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

/// The running proxy's port, if one runs.
pub fn port(layout: &Layout) -> Option<u16> {
    if !running(layout) {
        return None;
    }
    std::fs::read_to_string(layout.port_file())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Starts `exe proxy --on-demand` in the background unless a proxy runs,
/// and returns its port once it listens. The child inherits the environment
/// (never argv) and logs to `<state>/proxy/proxy.log`.
pub fn ensure_running(layout: &Layout, exe: &Path, pass_passphrase: bool) -> Result<u16> {
    layout.ensure()?;
    if let Some(p) = port(layout) {
        return Ok(p);
    }
    let log = crate::fsutil::open_private(&layout.log(), true)
        .map_err(|e| Error::io("open", &layout.log(), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("open", &layout.log(), e))?;
    let _ = std::fs::remove_file(layout.port_file());
    let mut cmd = std::process::Command::new(exe);
    if !pass_passphrase {
        cmd.env_remove(crate::vault::file::PASSPHRASE_ENV);
    }
    cmd.args(["proxy", "--on-demand", "-v"])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = Some(cmd.spawn().map_err(|e| Error::io("start", exe, e))?);
    let mut starts = 1;
    let t = Instant::now();
    loop {
        if let Some(p) = port(layout) {
            return Ok(p);
        }
        if let Some(Ok(Some(st))) = child.as_mut().map(|c| c.try_wait()) {
            // lost a race with another start, or with a proxy that was
            // exiting (idle) and still held the lock, or failed
            if let Some(p) = port(layout) {
                return Ok(p);
            }
            child = None;
            if !running(layout) && starts >= 3 {
                return Err(Error::Other(format!(
                    "airlock proxy exited at start ({st}); see {}",
                    layout.log().display()
                )));
            }
        }
        if child.is_none() && !running(layout) {
            // the proxy that held the lock is gone without a port: start one
            let _ = std::fs::remove_file(layout.port_file());
            child = Some(cmd.spawn().map_err(|e| Error::io("start", exe, e))?);
            starts += 1;
        }
        if t.elapsed() > Duration::from_secs(10) {
            return Err(Error::Other(format!(
                "airlock proxy did not start listening within 10 s; see {}",
                layout.log().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The IPv4 addresses of the container bridges on this host.
pub fn bridge_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills a list freed below with freeifaddrs; every
        // pointer is checked for null before it is read.
        unsafe {
            if libc::getifaddrs(&mut ifa) != 0 {
                return out;
            }
            let mut p = ifa;
            while !p.is_null() {
                let a = &*p;
                if !a.ifa_addr.is_null()
                    && i32::from((*a.ifa_addr).sa_family) == libc::AF_INET
                    && !a.ifa_name.is_null()
                {
                    let name = std::ffi::CStr::from_ptr(a.ifa_name).to_string_lossy();
                    if is_bridge(&name) {
                        let sin = &*(a.ifa_addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                }
                p = a.ifa_next;
            }
            libc::freeifaddrs(ifa);
        }
    }
    out
}

fn is_bridge(name: &str) -> bool {
    name.starts_with("docker")
        || name.starts_with("br-")
        || name.starts_with("podman")
        || name.starts_with("cni-podman")
}

/// Lifts the soft limit of open files to the hard limit: every stream
/// through the proxy holds two sockets (the sandbox's, the upstream's), and
/// the usual soft limit (1,024, also systemd's default) would stop it at
/// about 500 concurrent streams. Returns the soft limit now in force.
pub fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            } else {
                tracing::warn!(soft = lim.rlim_cur, "cannot raise the open-files limit");
            }
        }
    }
    lim.rlim_cur
}

/// Takes the daemon lock, trying for a moment: [`running`] probes it by
/// taking it for an instant (`airlock status`, `airlock proxy metrics`),
/// and a proxy starting just then must not take the probe for a running
/// proxy and exit. A running proxy holds it throughout: `false`.
fn take_daemon_lock(lock: &std::fs::File) -> bool {
    for _ in 0..10 {
        if lock.try_lock().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Runs the proxy until it is idle long enough (on demand) or forever.
pub fn run(layout: Layout, open_vault: VaultOpener, opts: Options) -> Result<()> {
    layout.ensure()?;
    let lock = FileLock::open(&layout.daemon_lock())?;
    if !take_daemon_lock(&lock) {
        return Err(Error::Usage(format!(
            "an airlock proxy is already running for this user (port {}); stop it first",
            port(&layout).map_or("unknown".into(), |p| p.to_string())
        )));
    }
    raise_open_files_limit();
    let state = Arc::new(State::new(layout.clone(), open_vault)?.with_sync(opts.sync.clone()));
    // One thread serves every connection, as one nginx worker does: a
    // request's two sockets (sandbox, upstream) are handled by tasks that
    // wake each other, and on one thread that costs no cross-thread wake-up
    // (futex, context switch). Blocking work (the vault, the engines) runs
    // on tokio's blocking threads as before.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the proxy's runtime: {e}")))?;
    let exiting = rt.block_on(async move {
        let auto = opts.listen.is_empty();
        let mut wanted: Vec<IpAddr> = if auto {
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        } else {
            opts.listen.clone()
        };
        // any free port, but the one used last if it is free: sandboxes
        // and services made before a restart keep their base URL
        let last_port = last_port_file(&layout);
        let mut port = opts.port;
        if port == 0
            && let Some(p) = std::fs::read_to_string(&last_port)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
            && std::net::TcpListener::bind(SocketAddr::new(wanted[0], p)).is_ok()
        {
            port = p;
        }
        if auto {
            wanted.extend(bridge_addresses());
        }
        // TLS on the same port, for agents that need an https:// base URL
        // (Codex with a ChatGPT session): a certificate from the per-user CA
        let tls = match super::tls::Tls::new(&layout, &wanted) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "the proxy serves plain HTTP only (no TLS for sandboxes)");
                None
            }
        };
        let mut bound = BTreeSet::new();
        let bind = |ip: IpAddr, port: &mut u16, bound: &mut BTreeSet<IpAddr>| -> Result<()> {
            let std = std::net::TcpListener::bind(SocketAddr::new(ip, *port))
                .map_err(|e| Error::Other(format!("cannot listen on {ip}:{port}: {e}")))?;
            std.set_nonblocking(true)
                .map_err(|e| Error::Other(format!("cannot listen on {ip}: {e}")))?;
            *port = std
                .local_addr()
                .map_err(|e| Error::Other(format!("cannot listen on {ip}: {e}")))?
                .port();
            let l = tokio::net::TcpListener::from_std(std)
                .map_err(|e| Error::Other(format!("cannot listen on {ip}: {e}")))?;
            tracing::info!(address = %ip, port = *port, "proxy listening");
            tokio::spawn(serve(l, state.clone(), tls.clone()));
            bound.insert(ip);
            Ok(())
        };
        for ip in wanted {
            if !bound.contains(&ip) {
                let r = bind(ip, &mut port, &mut bound);
                if r.is_err() && bound.is_empty() && opts.port == 0 && port != 0 {
                    // the last port was taken meanwhile: any free one
                    port = 0;
                    bind(ip, &mut port, &mut bound)?;
                } else {
                    r?;
                }
            }
        }
        super::metrics::serve_admin(&layout, opts.sync.clone(), opts.metrics_listen)?;
        crate::fsutil::write_atomic(&layout.port_file(), port.to_string().as_bytes(), 0o600)?;
        crate::fsutil::write_atomic(&last_port, port.to_string().as_bytes(), 0o600)?;
        let mut idle_since: Option<Instant> = None;
        let mut seen = BTreeSet::new();
        let mut certified = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !layout.present() {
                // its state directory was removed (by the user, or a test
                // that is done): go away rather than make it again
                tracing::info!("the state directory is gone: the proxy exits");
                return Ok(None);
            }
            let mut new_bridges = Vec::new();
            if auto {
                for ip in bridge_addresses() {
                    if !bound.contains(&ip) {
                        if let Err(e) = bind(ip, &mut port, &mut bound) {
                            tracing::warn!(error = %e, "a new bridge address could not be used");
                            bound.insert(ip);
                        } else {
                            new_bridges.push(ip);
                        }
                    }
                }
            }
            // a new bridge's address in the certificate; the CA renewed
            // (and the certificate made again) when it is due
            if let Some(t) = &tls
                && (!new_bridges.is_empty() || certified.elapsed() >= RECERTIFY)
            {
                certified = Instant::now();
                let t = t.clone();
                let r = tokio::task::spawn_blocking(move || t.renew(&new_bridges)).await;
                if let Ok(Err(e)) = r {
                    tracing::warn!(error = %e, "the proxy's TLS certificate could not be made again");
                }
            }
            let l2 = layout.clone();
            let mut s2 = std::mem::take(&mut seen);
            let (live, s2) = tokio::task::spawn_blocking(move || (forget_gone(&l2, &mut s2), s2))
                .await
                .unwrap_or((1, BTreeSet::new()));
            seen = s2;
            match (opts.exit_when_idle, live) {
                (Some(linger), 0) => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= linger {
                        // Decided under the grants' lock, held until this
                        // process has closed its ports and let go of the
                        // daemon lock: a sandbox registering meanwhile
                        // either is seen here (and the proxy stays) or
                        // finds no proxy once registered, and starts one
                        // ([`serving`]).
                        let hold = registry::hold(&layout)?;
                        if arrived(&layout, &seen) {
                            idle_since = None;
                            continue;
                        }
                        tracing::info!("no grant left: the proxy exits");
                        let _ = std::fs::remove_file(layout.port_file());
                        let _ = std::fs::remove_file(super::metrics::socket(&layout));
                        return Ok(Some(hold));
                    }
                }
                _ => idle_since = None,
            }
        }
    });
    let hold = exiting?;
    // listeners closed, then the daemon lock, then the grants' lock
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(lock);
    drop(hold);
    Ok(())
}

/// Whether a grant arrived that the last look at the engines did not
/// cover (young and never seen): its sandbox is starting.
fn arrived(layout: &Layout, seen: &BTreeSet<String>) -> bool {
    let now = jiff::Timestamp::now();
    match registry::load(layout) {
        Ok(grants) => grants.iter().any(|g| {
            !g.expired(now)
                && (now - g.created).get_seconds() < 60
                && !seen.contains(&g.placeholder_sha256)
        }),
        // unreadable: do not exit on a guess
        Err(_) => true,
    }
}

/// Called once a sandbox's grants are registered, with the proxy started
/// before ([`ensure_running`]): if that proxy has exited meanwhile (it was
/// idle and left just before the grants arrived), starts one again on the
/// same port, which the sandbox was given. Fails when that port is taken.
pub fn serving(layout: &Layout) -> Result<()> {
    if running(layout) {
        return Ok(());
    }
    let want = std::fs::read_to_string(last_port_file(layout))
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok());
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
    let pass = std::env::var_os(crate::vault::file::PASSPHRASE_ENV).is_some();
    let got = ensure_running(layout, &exe, pass)?;
    if Some(got) != want {
        return Err(Error::Other(format!(
            "the airlock proxy exited while the sandbox was being prepared and came back on another port ({got}): start the sandbox again"
        )));
    }
    tracing::info!(
        port = got,
        "the proxy had exited while the sandbox was prepared: started again"
    );
    Ok(())
}

/// How often the proxy makes its TLS certificate again (renewing its CA
/// when due, [`super::ca::RENEW_DAYS`]).
const RECERTIFY: Duration = Duration::from_secs(3600);

/// The port the proxy listened on last (kept after it exits; the next
/// on-demand start takes it again when it is free).
fn last_port_file(layout: &Layout) -> std::path::PathBuf {
    layout.port_file().with_file_name("last-port")
}

/// Removes the grants whose sandbox's container is gone (found by
/// airlock's sandbox label, or by the container id once recorded); returns
/// how many are left. A sandbox whose container was never seen is kept for
/// a minute (it is starting); one seen before and missing now is gone.
fn forget_gone(layout: &Layout, seen: &mut BTreeSet<String>) -> usize {
    let Ok(grants) = registry::load(layout) else {
        return 1;
    };
    let now = jiff::Timestamp::now();
    let mut left = 0;
    let mut gone = BTreeSet::new();
    // the grants seen gone, not every grant of their sandbox: one its id
    // came back with (registered meanwhile, its container not up yet) stays
    let mut gone_hashes = Vec::new();
    let mut any_stale = false;
    // one `ps` per engine for all its sandboxes, not one per grant: with
    // many sandboxes on a loaded machine the look stays short
    let mut running: std::collections::BTreeMap<&str, Option<BTreeSet<String>>> =
        Default::default();
    for g in &grants {
        // seen by grant, not by sandbox: a sandbox id that comes back (a Dev
        // Container's project slug at its next start) gets the starting
        // grace for its new grant even while the old one is still here
        let young = (now - g.created).get_seconds() < 60 && !seen.contains(&g.placeholder_sha256);
        if g.stale(now) {
            // expired an hour ago (a pod's grant, `airlock k8s --grant-ttl`):
            // dropped alone, under the lock (not its sandbox's other grants,
            // a new one rendered again, nor one renewed since this read)
            any_stale = true;
            continue;
        }
        let listed = match g.engine.as_deref() {
            Some(e @ ("docker" | "podman")) if g.container.is_none() => running
                .entry(e)
                .or_insert_with(|| running_sandboxes(e))
                .as_ref()
                .map(|s| s.contains(&g.sandbox)),
            _ => None,
        };
        let alive = match g.engine.as_deref() {
            Some(_) if listed == Some(true) => {
                seen.insert(g.placeholder_sha256.clone());
                true
            }
            Some(_) if listed == Some(false) => young,
            Some(engine) if container_alive(engine, g) => {
                seen.insert(g.placeholder_sha256.clone());
                true
            }
            _ => young,
        };
        if alive && !g.expired(now) {
            left += 1;
        } else if !alive {
            gone.insert(g.sandbox.clone());
            gone_hashes.push(g.placeholder_sha256.clone());
        }
    }
    if any_stale && let Ok(dropped) = registry::remove_stale(layout, now) {
        for s in dropped {
            tracing::info!(sandbox = %s, "grant expired over an hour ago: dropped");
        }
    }
    let removed = registry::remove_hashes(layout, &gone_hashes).is_ok();
    // only grants still in the file are remembered
    let present: BTreeSet<&str> = grants
        .iter()
        .map(|g| g.placeholder_sha256.as_str())
        .collect();
    seen.retain(|h| present.contains(h.as_str()) && !gone_hashes.contains(h));
    for s in gone {
        if removed {
            tracing::info!(sandbox = %s, "sandbox gone: its placeholder is refused from now on");
        }
    }
    left
}

/// The sandbox ids (airlock's label) of `engine`'s running containers;
/// `None` when the engine could not answer (every grant is then kept).
fn running_sandboxes(engine: &str) -> Option<BTreeSet<String>> {
    // Docker's ps template has `.Label`; Podman's has the `.Labels` map
    let format = if engine == "docker" {
        format!("{{{{.Label \"{}\"}}}}", crate::sandbox::LABEL)
    } else {
        format!("{{{{index .Labels \"{}\"}}}}", crate::sandbox::LABEL)
    };
    let o = std::process::Command::new(engine)
        .args([
            "ps",
            "--filter",
            &format!("label={}", crate::sandbox::LABEL),
        ])
        .args(["--format", &format])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

fn container_alive(engine: &str, g: &registry::Grant) -> bool {
    if engine != "docker" && engine != "podman" && engine != SWARM {
        return true;
    }
    let label = format!("label={}={}", crate::sandbox::LABEL, g.sandbox);
    let mut cmd;
    if engine == SWARM {
        // a Swarm service: alive as long as the service exists (its tasks
        // come and go with updates and restarts)
        cmd = std::process::Command::new("docker");
        cmd.args(["service", "ls", "-q", "--filter", &label]);
    } else {
        cmd = std::process::Command::new(engine);
        cmd.args(["ps", "-q", "--filter"]);
        match &g.container {
            Some(c) => cmd.arg(format!("id={c}")),
            None => cmd.arg(&label),
        };
    }
    match cmd
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => !o.stdout.trim_ascii().is_empty(),
        // the engine could not answer: keep the grant
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Dev Container's sandbox id comes back at its next start: the new
    /// grant, registered before its container is up, is not taken with
    /// the old one whose container is gone (it was: the sandbox had been
    /// seen, so its new grant had no starting grace, and every grant of a
    /// gone sandbox was removed).
    #[test]
    fn a_gone_sandbox_takes_only_its_own_grants() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        let now = jiff::Timestamp::now();
        let mut old = k8s_grant("ph-old", now);
        old.sandbox = "dc-proj".into();
        old.expires_at = None;
        old.created = now - jiff::SignedDuration::from_hours(2);
        // its container runs (an engine airlock does not ask counts as alive)
        registry::add(&l, &old).unwrap();
        let mut seen = BTreeSet::new();
        assert_eq!(forget_gone(&l, &mut seen), 1);
        // then it is gone (nothing to ask: not young, not alive), and the
        // same sandbox id registers a new grant, its container not up yet
        old.engine = None;
        registry::add(&l, &old).unwrap();
        let mut new = old.clone();
        new.placeholder_sha256 = super::super::placeholder::hash("ph-new");
        new.created = now;
        registry::add(&l, &new).unwrap();
        assert_eq!(forget_gone(&l, &mut seen), 1);
        let left = registry::load(&l).unwrap();
        assert!(registry::lookup(&left, "ph-new").is_some(), "{left:?}");
        assert!(registry::lookup(&left, "ph-old").is_none(), "{left:?}");
    }

    #[test]
    fn a_probe_holding_the_lock_for_an_instant_is_not_a_running_proxy() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("daemon.lock");
        // `running` in another process, holding the lock for a moment
        let probe = FileLock::open(&path).unwrap();
        probe.try_lock().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            probe.unlock().unwrap();
        });
        let lock = FileLock::open(&path).unwrap();
        assert!(take_daemon_lock(&lock));
        t.join().unwrap();
        // a proxy holding it is one
        assert!(!take_daemon_lock(&FileLock::open(&path).unwrap()));
    }

    fn k8s_grant(ph: &str, expires_at: jiff::Timestamp) -> registry::Grant {
        let mut g = registry::tests::grant("k8s-team-dev", ph);
        g.engine = Some("k8s".into());
        g.created = expires_at - jiff::SignedDuration::from_hours(24);
        g.expires_at = Some(expires_at);
        g
    }

    /// A pods' grant expired over an hour ago is dropped by its hash; a
    /// newer grant of the same pods, and one that only just expired (still
    /// renewable, not counted as live), stay.
    #[test]
    fn stale_grants_go_by_hash() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        let now = jiff::Timestamp::now();
        let hour = jiff::SignedDuration::from_hours(1);
        let with = |ph: &str, sandbox: &str, expires: jiff::Timestamp| {
            let mut g = registry::tests::grant(sandbox, ph);
            g.engine = Some("k8s".into());
            g.expires_at = Some(expires);
            registry::add(&l, &g).unwrap();
        };
        with("ph-stale", "k8s-team-dev", now - hour * 2);
        with("ph-new", "k8s-team-dev", now + hour);
        with("ph-expired", "k8s-team-old", now - hour / 2);
        let mut seen = BTreeSet::new();
        assert_eq!(forget_gone(&l, &mut seen), 1, "only the new grant is live");
        let left = registry::load(&l).unwrap();
        assert!(registry::lookup(&left, "ph-stale").is_none());
        assert!(registry::lookup(&left, "ph-new").is_some());
        assert!(registry::lookup(&left, "ph-expired").is_some());
    }
}
