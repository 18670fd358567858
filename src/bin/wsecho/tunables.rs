//! glibc tunables the server runs with, set by starting the command once more: glibc reads
//! `GLIBC_TUNABLES` only as a process starts.
//!
//! - `glibc.malloc.tcache_max=64`: glibc's per-thread cache of freed blocks kept to blocks up
//!   to 64 bytes. With a thread per connection, every connection's thread keeps its own cache
//!   for as long as it lives: by default up to seven blocks of each size up to 1 KiB, most of
//!   them what the connection's first moments freed (a TLS handshake frees many). An idle wss
//!   connection held 8 KiB of them, a plain one 1.6 KiB (`wsload idle`, 5000 connections).
//!   An echo costs the same instructions either way; bigger blocks go back to the shared
//!   arenas, where the next connection reuses them.
//! - `glibc.cpu.x86_rep_movsb_threshold` (x86-64): `memcpy` copies with vector loads and stores,
//!   never `rep movsb`. On AMD EPYC `rep movsb` runs about 30 times slower when the
//!   destination lies 16 bytes past the source modulo 4 KiB, and that is exactly where malloc
//!   puts the next block of the same size: rustls copies each 16 KiB record into such a block
//!   as it decrypts and as it encrypts. Serving a wss stream of 64 KiB messages (`wsload
//!   stream`), the server spent 40% of its time in those copies, and 5% without `rep movsb`
//!   (`perf record`). Copies past glibc's non-temporal threshold (megabytes)
//!   still take its streaming path.
//!
//! An operator's own setting of a tunable, in `GLIBC_TUNABLES`, is kept as given; when every
//! one is set there is no restart. Programs run per connection see `GLIBC_TUNABLES` as the
//! operator gave it.

const TUNABLES: &str = "GLIBC_TUNABLES";
/// Each tunable: the prefix that finds an operator's own setting of it, and the setting.
const WANTED: &[(&str, &str)] = &[
    ("glibc.malloc.tcache", "glibc.malloc.tcache_max=64"),
    #[cfg(target_arch = "x86_64")]
    (
        "glibc.cpu.x86_rep_movsb_threshold",
        "glibc.cpu.x86_rep_movsb_threshold=1073741824",
    ),
];
/// Set on the restarted process: `GLIBC_TUNABLES` as the operator gave it ("=" and the value),
/// or empty when it was unset; put back at once, so programs run per connection inherit the
/// operator's environment.
const WAS: &str = "WSECHO_GLIBC_TUNABLES_WAS";

/// Call first in `main`, before any thread starts. Starts this command again with the
/// tunables and does not return when that works; otherwise returns why not, a line to log.
pub fn restart_with_tunables() -> Option<String> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    if let Some(was) = std::env::var_os(WAS) {
        put_back(&was);
        return None;
    }
    // A list that is not UTF-8 is not glibc's: leave it alone.
    let given = std::env::var(TUNABLES).ok();
    let tunables = with_wanted(given.as_deref().unwrap_or_default())?;
    let was = given.map_or(String::new(), |value| format!("={value}"));
    // The path /proc/self/exe names (not that link itself, which valgrind cannot follow).
    let error = match std::env::current_exe() {
        Ok(program) => {
            let mut args = std::env::args_os();
            let mut command = std::process::Command::new(program);
            if let Some(name) = args.next() {
                std::os::unix::process::CommandExt::arg0(&mut command, name);
            }
            command.args(args).env(TUNABLES, &tunables).env(WAS, was);
            std::os::unix::process::CommandExt::exec(&mut command)
        }
        Err(error) => error,
    };
    Some(format!(
        "could not restart with glibc's tunables ({error}); each idle connection holds a few \
         KiB more, and large copies may run slower. Set {TUNABLES}={tunables} to have them \
         without the restart"
    ))
}

/// The operator's list `given` with each of `WANTED` it does not set added; `None` when it
/// sets them all.
fn with_wanted(given: &str) -> Option<String> {
    let mut tunables = given.to_string();
    for (prefix, setting) in WANTED {
        if !given.split(':').any(|entry| entry.starts_with(prefix)) {
            if !tunables.is_empty() {
                tunables.push(':');
            }
            tunables.push_str(setting);
        }
    }
    (tunables.len() > given.len()).then_some(tunables)
}

/// Put `GLIBC_TUNABLES` back as the operator gave it (`was`: see `WAS`).
fn put_back(was: &std::ffi::OsStr) {
    use std::os::unix::ffi::OsStrExt;
    let given = was
        .as_bytes()
        .strip_prefix(b"=")
        .map(|value| std::ffi::OsStr::from_bytes(value).to_os_string());
    // SAFETY: called first in `main`, before any thread starts: nothing reads the environment
    // meanwhile.
    unsafe {
        std::env::remove_var(WAS);
        match given {
            Some(value) => std::env::set_var(TUNABLES, value),
            None => std::env::remove_var(TUNABLES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_wanted;

    #[test]
    fn an_operators_own_setting_of_a_tunable_is_kept_and_the_others_are_added() {
        let unset = with_wanted("").unwrap_or_default();
        assert!(unset.starts_with("glibc.malloc.tcache_max=64"), "{unset}");
        let given = "glibc.malloc.arena_max=4:glibc.malloc.tcache_count=2";
        let kept = with_wanted(given);
        if cfg!(target_arch = "x86_64") {
            assert!(
                unset.contains(":glibc.cpu.x86_rep_movsb_threshold="),
                "{unset}"
            );
            assert_eq!(
                kept.as_deref(),
                Some(
                    "glibc.malloc.arena_max=4:glibc.malloc.tcache_count=2:\
                     glibc.cpu.x86_rep_movsb_threshold=1073741824"
                )
            );
            let both = "glibc.cpu.x86_rep_movsb_threshold=8192:glibc.malloc.tcache_max=0";
            assert_eq!(with_wanted(both), None, "nothing to add: no restart");
        } else {
            assert_eq!(kept, None, "nothing to add: no restart");
        }
    }
}
