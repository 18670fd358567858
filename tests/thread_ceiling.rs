//! The host runs out of what a thread needs while clients keep coming: here the process's
//! memory mappings (`vm.max_map_count`), used up by the test itself in the server's own process,
//! as a host with many connections would use them up. Each client past the ceiling gets 503,
//! the clients already open keep echoing, the process lives, and once the crowd has left new
//! clients are served. Alone in its file: the mappings counted are this process's.
mod common;

use common::*;
use std::ffi::c_void;
use tungstenite::Message;

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Pages mapped to use up mappings: every other page is made inaccessible, so no two
/// neighbours can merge and each page is a mapping of its own. Unmapped when dropped.
struct Filler {
    start: *mut c_void,
    len: usize,
}

impl Filler {
    /// Leave the process about `room` mappings below the host's ceiling.
    fn leaving(room: usize) -> Filler {
        let page = 4096;
        let pages = max_map_count() - mappings_in_process() - room;
        let len = pages * page;
        // SAFETY: a fresh private mapping, and protection changes within it only.
        let start = unsafe {
            let start = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            assert_ne!(
                start,
                libc::MAP_FAILED,
                "{}",
                std::io::Error::last_os_error()
            );
            for index in (1..pages).step_by(2) {
                let at = start.cast::<u8>().add(index * page).cast();
                assert_eq!(libc::mprotect(at, page, libc::PROT_NONE), 0);
            }
            start
        };
        Filler { start, len }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `leaving`.
        unsafe { libc::munmap(self.start, self.len) };
    }
}

#[test]
fn clients_past_the_hosts_thread_ceiling_get_503_and_everyone_else_carries_on() {
    let server = start(config());
    let mut first = connect(&server);

    let filler = Filler::leaving(80);
    let (mut open, mut refused) = (Vec::new(), 0);
    for _ in 0..120 {
        match connect_to(server.ws_addr(), "/echo") {
            Ok(client) => open.push(client),
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503);
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or(b""));
                assert!(body.contains("no thread for your connection"), "{body}");
                refused += 1;
            }
            Err(error) => panic!("neither served nor refused: {error}"),
        }
    }
    assert!(refused > 0, "the ceiling was never reached");
    // The page port meets the same ceiling with the same answer.
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let page =
        String::from_utf8_lossy(&raw_exchange(server.http_addr().unwrap(), request)).into_owned();
    assert_eq!(status_of(page.as_bytes()), 503, "{page}");
    assert!(page.contains("no thread for your connection"), "{page}");
    assert!(!open.is_empty(), "nobody was served below the ceiling");

    // Everyone admitted is still served, the first client too.
    first.send(Message::text("still here")).unwrap();
    assert_eq!(next_message(&mut first), Message::text("still here"));
    assert_eq!(server.open_connections(), 1 + open.len());

    // The crowd leaves; the host's ceiling is as low as before, and new clients are served.
    open.clear();
    assert!(eventually(|| server.open_connections() == 1));
    let mut later = Vec::new();
    for _ in 0..10 {
        let mut client = connect(&server);
        client.send(Message::text("later")).unwrap();
        assert_eq!(next_message(&mut client), Message::text("later"));
        later.push(client);
    }
    drop(later);
    drop(filler);
    server.shutdown();
}
