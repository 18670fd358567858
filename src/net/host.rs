//! What the host lets this process hold, read at start from the kernel's limits: descriptors
//! (`RLIMIT_NOFILE`), memory mappings (`vm.max_map_count`), threads (`kernel.threads-max`,
//! `kernel.pid_max`, the cgroup's `pids.max`, and `RLIMIT_NPROC` for other users than root).
//!
//! Every connection, on either port, costs one descriptor, one thread and that thread's
//! mappings (`threads::MAPPINGS_PER_THREAD`). The lowest of these limits, less what is in use
//! and a margin for everything else the process and the host need, is how many connections
//! the server can hold: the caps are kept under it, so that the host's own limits are never
//! what refuses a client (see `Server::start_with`).

use crate::net::threads::MAPPINGS_PER_THREAD;
use std::fmt;
use std::fs;
use std::path::PathBuf;

/// Descriptors kept for everything but connections: the listeners' spare descriptors for
/// refusing when the rest are gone, log files, Redis links, files the page serves.
const SPARE_DESCRIPTORS: u64 = 64;

/// Threads kept for everything but connections: threads waiting for the next connection,
/// inflaters being made, the accept loops and helpers, and the rest of the host.
const SPARE_THREADS: u64 = 64 + 256;

/// Mappings kept for everything but connection threads: malloc's arenas, the libraries.
const SPARE_MAPPINGS: u64 = 1024;

/// glibc gives every block of at least this size a mapping of its own (see
/// `return_big_frees_to_the_system`): the memory budget's worth of big messages may need as
/// many mappings as it holds such blocks.
const BIG_BLOCK: u64 = 128 * 1024;

/// One limit of the host, as read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// What it is called, as an operator would look it up.
    pub name: &'static str,
    /// Its value.
    pub value: u64,
    /// How much of it is in use already (by this process, or the whole host for host-wide
    /// limits).
    pub in_use: u64,
    /// How many connections it leaves room for.
    pub connections: u64,
    /// What to raise to hold more.
    pub raise: &'static str,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {} ({} in use), room for {} connections; to hold more, {}",
            self.name, self.value, self.in_use, self.connections, self.raise
        )
    }
}

/// Every limit that could be read, each with the connections it leaves room for.
pub fn limits(memory_budget: usize) -> Vec<Limit> {
    let mut limits = Vec::new();
    if let Some((soft, _)) = rlimit(libc::RLIMIT_NOFILE) {
        let in_use = count_entries("/proc/self/fd").saturating_sub(1); // the listing's own
        limits.push(Limit {
            name: "the open-file limit (RLIMIT_NOFILE)",
            value: soft,
            in_use,
            connections: soft.saturating_sub(in_use + SPARE_DESCRIPTORS),
            raise: "raise `ulimit -n` (systemd: LimitNOFILE=)",
        });
    }
    if let Some(max) = read_number("/proc/sys/vm/max_map_count") {
        let in_use = fs::read_to_string("/proc/self/maps").map_or(0, |maps| maps.lines().count());
        let in_use = in_use as u64;
        let spare = SPARE_MAPPINGS + memory_budget as u64 / BIG_BLOCK;
        limits.push(Limit {
            name: "the sysctl vm.max_map_count",
            value: max,
            in_use,
            connections: max.saturating_sub(in_use + spare) / MAPPINGS_PER_THREAD as u64,
            raise: "raise vm.max_map_count (sysctl -w vm.max_map_count=N, or /etc/sysctl.d/)",
        });
    }
    // Threads are counted host-wide: every thread of every process takes one of each.
    let threads_now = threads_on_host();
    for (path, name, raise) in [
        (
            "/proc/sys/kernel/threads-max",
            "the sysctl kernel.threads-max",
            "raise kernel.threads-max (sysctl)",
        ),
        (
            "/proc/sys/kernel/pid_max",
            "the sysctl kernel.pid_max",
            "raise kernel.pid_max (sysctl; at most 4194304)",
        ),
    ] {
        if let (Some(max), Some(in_use)) = (read_number(path), threads_now) {
            limits.push(thread_limit(name, max, in_use, raise));
        }
    }
    if let Some((max, in_use)) = cgroup_pids() {
        let (name, raise) = (
            "the cgroup's pids.max",
            "raise the cgroup's pids.max (systemd: TasksMax=)",
        );
        limits.push(thread_limit(name, max, in_use, raise));
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if let (false, Some((soft, _))) = (root, rlimit(libc::RLIMIT_NPROC)) {
        // Counted for the whole user; this process's own threads are all that can be seen.
        let in_use = read_status_field("Threads:").unwrap_or(1);
        let (name, raise) = (
            "the process limit (RLIMIT_NPROC)",
            "raise `ulimit -u` (systemd: LimitNPROC=)",
        );
        limits.push(thread_limit(name, soft, in_use, raise));
    }
    limits
}

/// The limit that leaves room for the fewest connections, if any could be read.
pub fn tightest(limits: Vec<Limit>) -> Option<Limit> {
    limits.into_iter().min_by_key(|limit| limit.connections)
}

fn thread_limit(name: &'static str, max: u64, in_use: u64, raise: &'static str) -> Limit {
    Limit {
        name,
        value: max,
        in_use,
        connections: max.saturating_sub(in_use + SPARE_THREADS),
        raise,
    }
}

/// The soft and hard values of a resource limit; `None` when unlimited or unreadable.
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let read = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
    (read && limit.rlim_cur != libc::RLIM_INFINITY).then_some((limit.rlim_cur, limit.rlim_max))
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn count_entries(path: &str) -> u64 {
    fs::read_dir(path).map_or(0, |entries| entries.count() as u64)
}

/// Threads on the whole host now: the fourth field of /proc/loadavg, "running/total".
fn threads_on_host() -> Option<u64> {
    let loadavg = fs::read_to_string("/proc/loadavg").ok()?;
    let field = loadavg.split_whitespace().nth(3)?;
    field.split('/').nth(1)?.parse().ok()
}

fn read_status_field(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().parse().ok()
}

/// The pids controller of this process's cgroup (v1 or v2): its limit and what is in use,
/// when it has one ("max" means none).
fn cgroup_pids() -> Option<(u64, u64)> {
    let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
    let (root, path) = membership.lines().find_map(|line| {
        let v1 = line
            .split_once(":pids:")
            .map(|(_, path)| ("/sys/fs/cgroup/pids", path));
        v1.or_else(|| {
            line.strip_prefix("0::")
                .map(|path| ("/sys/fs/cgroup", path))
        })
    })?;
    let folder = PathBuf::from(root).join(path.trim_start_matches('/'));
    let max = fs::read_to_string(folder.join("pids.max")).ok()?;
    let current = fs::read_to_string(folder.join("pids.current")).ok()?;
    Some((max.trim().parse().ok()?, current.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_a_descriptor_limit_and_a_mapping_limit_with_room_left() {
        let limits = limits(256 << 20);
        let names: Vec<_> = limits.iter().map(|limit| limit.name).collect();
        assert!(
            names.iter().any(|name| name.contains("RLIMIT_NOFILE")),
            "{names:?}"
        );
        assert!(
            names.iter().any(|name| name.contains("max_map_count")),
            "{names:?}"
        );
        for limit in &limits {
            assert!(
                limit.in_use > 0 && limit.connections < limit.value,
                "{limit}"
            );
        }
    }

    #[test]
    fn the_tightest_limit_is_the_one_with_least_room() {
        let limit = |name, connections| Limit {
            name,
            value: 100_000,
            in_use: 1,
            connections,
            raise: "",
        };
        let found = tightest(vec![limit("a", 500), limit("b", 20), limit("c", 900)]);
        assert_eq!(found.map(|limit| limit.name), Some("b"));
        assert_eq!(tightest(Vec::new()), None);
    }

    #[test]
    fn each_connection_takes_its_share_of_a_limit() {
        let threads = thread_limit("t", 10_000, 1_000, "");
        assert_eq!(threads.connections, 10_000 - 1_000 - SPARE_THREADS);
        let exhausted = thread_limit("t", 100, 1_000, "");
        assert_eq!(exhausted.connections, 0);
    }
}
