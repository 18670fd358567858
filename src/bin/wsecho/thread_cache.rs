//! glibc's per-thread malloc cache (tcache), kept to small blocks. With a thread per
//! connection, every connection's thread keeps its own cache of freed blocks for as long as it
//! lives: up to seven of each size up to 1 KiB, most of them what the connection's first
//! moments freed (a TLS handshake frees many). An idle wss connection held 8 KiB of them, a
//! plain one 1.6 KiB (`wsload idle`, 5000 connections). glibc sets the cache's limits only
//! from `GLIBC_TUNABLES` as a process starts, so the command starts itself once more with
//! `glibc.malloc.tcache_max=64`: blocks up to 64 bytes keep the cache (an echo costs the same
//! instructions, under callgrind), bigger ones go back to the shared arenas, where the next
//! connection reuses them. An operator's own `glibc.malloc.tcache*` setting is kept as given.

use std::ffi::OsString;

const TUNABLES: &str = "GLIBC_TUNABLES";
const SMALL_CACHE: &str = "glibc.malloc.tcache_max=64";
/// Set on the restarted process: `GLIBC_TUNABLES` as the operator gave it ("=" and the value),
/// or empty when it was unset; put back at once, so programs run per connection inherit the
/// operator's environment.
const WAS: &str = "WSECHO_GLIBC_TUNABLES_WAS";

/// Call first in `main`, before any thread starts. Starts this command again with the small
/// cache and does not return when that works; otherwise returns why not, a line to log.
pub fn restart_with_small_cache() -> Option<String> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    if let Some(was) = std::env::var_os(WAS) {
        put_back(&was);
        return None;
    }
    let given = std::env::var_os(TUNABLES);
    let given_text = given.as_deref().map(|value| value.to_string_lossy());
    if given_text.is_some_and(|text| text.contains("glibc.malloc.tcache")) {
        return None;
    }
    let (tunables, was) = match &given {
        Some(value) if !value.is_empty() => {
            let mut both = value.clone();
            both.push(":");
            both.push(SMALL_CACHE);
            let mut was = OsString::from("=");
            was.push(value);
            (both, was)
        }
        Some(_) => (SMALL_CACHE.into(), OsString::from("=")),
        None => (SMALL_CACHE.into(), OsString::new()),
    };
    // The path /proc/self/exe names (not that link itself, which valgrind cannot follow).
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => return Some(cannot_restart(error)),
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(program);
    if let Some(name) = args.next() {
        std::os::unix::process::CommandExt::arg0(&mut command, name);
    }
    command.args(args).env(TUNABLES, tunables).env(WAS, was);
    Some(cannot_restart(std::os::unix::process::CommandExt::exec(
        &mut command,
    )))
}

fn cannot_restart(error: std::io::Error) -> String {
    format!(
        "could not restart with glibc's small per-thread malloc cache ({error}); each idle \
         connection holds a few KiB more. Set {TUNABLES}={SMALL_CACHE} to have it without \
         the restart"
    )
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
