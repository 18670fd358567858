//! Socket activation: the listening sockets systemd (or any supervisor speaking its protocol,
//! sd_listen_fds(3)) passed to this process, and which port each one is.
//!
//! The protocol: descriptors 3, 4, ... are listening sockets, `LISTEN_FDS` says how many,
//! `LISTEN_PID` names the process they are for (so a child does not take them by mistake) and
//! `LISTEN_FDNAMES` may name them, colon-separated (`FileDescriptorName=` in the .socket unit).
//! A socket named `ws`, `http` or `policy` is that port; any other is placed by its address,
//! the one the configuration gives that port (a TCP address or a Unix socket's path, or for
//! the policy port its port number). The sockets are taken once per process.

use crate::net::listen::{ListenAddr, Listener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first descriptor passed.
const FIRST_FD: RawFd = 3;

/// The ports' names, as `FileDescriptorName=` gives them.
pub const ROLES: [&str; 3] = ["ws", "http", "policy"];

/// A passed socket, with its name if it has one.
pub struct Passed {
    pub listener: Listener,
    pub name: Option<String>,
}

/// The passed sockets, each in its port's place.
#[derive(Default)]
pub struct Placed {
    pub ws: Option<Listener>,
    pub http: Option<Listener>,
    pub policy: Option<Listener>,
}

impl Placed {
    /// Whether any socket was passed: then the process serves sockets that outlive it, and a
    /// stop is a restart as far as clients can tell.
    pub fn any(&self) -> bool {
        self.ws.is_some() || self.http.is_some() || self.policy.is_some()
    }
}

/// Take the sockets passed to this process (none if `LISTEN_PID` is not ours, or they were
/// taken already) and place each on its port. The error says which socket could not be used
/// or placed, and what to do.
pub fn take(
    ws: &ListenAddr,
    http: Option<&ListenAddr>,
    policy_port: Option<u16>,
) -> Result<Placed, String> {
    let own = std::process::id();
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let count = count(pid.as_deref(), fds.as_deref(), own)?;
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if count == 0 || TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Placed::default());
    }
    let names = names(std::env::var("LISTEN_FDNAMES").ok().as_deref(), count);
    let mut passed = Vec::with_capacity(count);
    for (fd, name) in (FIRST_FD..).zip(names) {
        // Not for the programs this process runs (systemd passes them inheritable).
        // SAFETY: fcntl on a descriptor number; harmless if it were not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: LISTEN_PID names this process, so descriptors 3.. are the sockets passed to
        // it, and TAKEN makes sure they are owned once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let listener = Listener::inherited(owned)
            .map_err(|error| format!("socket activation: descriptor {fd}: {error}"))?;
        passed.push(Passed { listener, name });
    }
    place(passed, ws, http, policy_port)
}

/// How many sockets were passed to process `own`, from `LISTEN_PID` and `LISTEN_FDS`.
fn count(pid: Option<&str>, fds: Option<&str>, own: u32) -> Result<usize, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(0);
    };
    if pid.trim().parse::<u32>().ok() != Some(own) {
        return Ok(0); // for another process (our parent's), not for us
    }
    fds.trim().parse().map_err(|_| {
        format!("socket activation: LISTEN_FDS is `{fds}`, not a number of descriptors")
    })
}

/// `count` names from `LISTEN_FDNAMES` (missing ones `None`).
fn names(text: Option<&str>, count: usize) -> Vec<Option<String>> {
    let mut given = text.unwrap_or("").split(':').map(str::to_string);
    (0..count)
        .map(|_| given.next().filter(|name| !name.is_empty()))
        .collect()
}

/// Place each passed socket on its port: by name, else by address.
pub fn place(
    passed: Vec<Passed>,
    ws: &ListenAddr,
    http: Option<&ListenAddr>,
    policy_port: Option<u16>,
) -> Result<Placed, String> {
    let mut placed = Placed::default();
    for Passed { listener, name } in passed {
        let local = listener.local().clone();
        let by_name = name.as_deref().filter(|name| ROLES.contains(name));
        let role = by_name.or_else(|| {
            if &local == ws {
                Some("ws")
            } else if http == Some(&local) {
                Some("http")
            } else if local
                .tcp()
                .is_some_and(|addr| Some(addr.port()) == policy_port)
            {
                Some("policy")
            } else {
                None
            }
        });
        let slot = match role {
            Some("ws") => &mut placed.ws,
            Some("http") => &mut placed.http,
            Some(_) => &mut placed.policy,
            None => {
                let named = name.map_or(String::new(), |name| format!(" (named `{name}`)"));
                return Err(format!(
                    "socket activation: the socket on {local}{named} is none of wsecho's ports: \
                     name it ws, http or policy (FileDescriptorName= in the .socket unit), or \
                     give its address to --ws or --http"
                ));
            }
        };
        if slot.is_some() {
            return Err(format!(
                "socket activation: two sockets for the {} port (the second on {local}); pass \
                 one each",
                role.unwrap_or_default()
            ));
        }
        *slot = Some(listener);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn passed(name: Option<&str>) -> (Passed, ListenAddr) {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let listener = Listener::inherited(OwnedFd::from(tcp)).unwrap();
        let local = listener.local().clone();
        let name = name.map(str::to_string);
        (Passed { listener, name }, local)
    }

    #[test]
    fn sockets_are_for_this_process_only_and_a_bad_count_is_explained() {
        assert_eq!(count(Some("42"), Some("3"), 42), Ok(3));
        assert_eq!(count(Some("41"), Some("3"), 42), Ok(0));
        assert_eq!(count(None, Some("3"), 42), Ok(0));
        assert_eq!(count(Some("42"), None, 42), Ok(0));
        assert!(
            count(Some("42"), Some("x"), 42)
                .unwrap_err()
                .contains("LISTEN_FDS")
        );
    }

    #[test]
    fn names_are_read_in_order_and_missing_ones_are_none() {
        assert_eq!(
            names(Some("ws:http"), 3),
            vec![Some("ws".to_string()), Some("http".to_string()), None]
        );
        assert_eq!(names(None, 2), vec![None, None]);
        assert_eq!(names(Some("::policy"), 3)[2].as_deref(), Some("policy"));
    }

    #[test]
    fn sockets_are_placed_by_name_then_by_address() {
        let (page, page_addr) = passed(Some("http"));
        let (echo, echo_addr) = passed(Some("wsecho.socket"));
        let (policy, policy_addr) = passed(None);
        let policy_port = policy_addr.tcp().unwrap().port();
        let placed = place(
            vec![page, echo, policy],
            &echo_addr,
            None,
            Some(policy_port),
        )
        .unwrap();
        assert_eq!(placed.http.unwrap().local(), &page_addr);
        assert_eq!(placed.ws.unwrap().local(), &echo_addr);
        assert_eq!(placed.policy.unwrap().local(), &policy_addr);
    }

    #[test]
    fn a_socket_that_fits_no_port_or_a_second_for_one_port_is_refused_with_the_fix() {
        let (stray, stray_addr) = passed(Some("other"));
        let ws: ListenAddr = "127.0.0.1:1".parse().unwrap();
        let error = place(vec![stray], &ws, None, None).err().unwrap();
        assert!(
            error.contains(&stray_addr.to_string()) && error.contains("FileDescriptorName"),
            "{error}"
        );
        let (first, _) = passed(Some("ws"));
        let (second, _) = passed(Some("ws"));
        let error = place(vec![first, second], &ws, None, None).err().unwrap();
        assert!(error.contains("two sockets for the ws port"), "{error}");
    }
}
