//! The host's own limits, met by the `wsecho` binary: caps far above what the host can hold are
//! brought down with one warning at start, and a process out of descriptors still answers every
//! client (503) instead of leaving it in the listen queue.
mod common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

fn open_file_limit(soft_and_hard: u64) -> libc::rlimit {
    libc::rlimit {
        rlim_cur: soft_and_hard,
        rlim_max: soft_and_hard,
    }
}

/// The binary, started with its open-file limit at `limit` (soft and hard).
fn wsecho_with_open_files(limit: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsecho"));
    // SAFETY: setrlimit is async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(move || {
            match libc::setrlimit(libc::RLIMIT_NOFILE, &open_file_limit(limit)) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    command
}

/// The number after `before` in `line`.
fn number_after(line: &str, before: &str) -> usize {
    let rest = line
        .split(before)
        .nth(1)
        .unwrap_or_else(|| panic!("{before:?} in {line}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after {before:?} in {line}"))
}

/// An upgrade on a fresh socket: the status, and the rest of a refusal's answer.
fn try_upgrade(addr: std::net::SocketAddr) -> (u16, String, std::net::TcpStream) {
    let mut stream = tcp(addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => break,
            Err(error) => panic!("no answer within 5 s: {error}"),
        }
    }
    let status = status_of(&head);
    if status != 101 {
        head.extend(read_to_close(&mut stream));
    }
    (status, String::from_utf8_lossy(&head).into_owned(), stream)
}

fn echoes(stream: &mut std::net::TcpStream, text: &[u8]) {
    stream.write_all(&client_frame(0x1, text)).unwrap();
    let (_, opcode, payload) = read_server_frame(stream).unwrap();
    assert_eq!((opcode, payload.as_slice()), (0x1, text));
}

#[test]
fn caps_far_above_the_hosts_limits_are_lowered_with_one_warning() {
    let server = spawn_command(
        wsecho_with_open_files(400),
        &["--max-connections", "100000"],
    );
    let warnings: Vec<_> = (server.startup_log.iter())
        .filter(|line| line.contains("more than this host can hold"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", server.startup_log);
    let warning = warnings[0];
    assert!(warning.contains("RLIMIT_NOFILE) is 400"), "{warning}");
    assert!(warning.contains("ulimit -n"), "{warning}");
    let cap = number_after(warning, "Serving at most ");
    assert!((100..400).contains(&cap), "{warning}");

    // The server runs, holds its effective cap, and refuses one more with its own 503.
    let mut held: Vec<_> = (0..cap).map(|_| raw_upgraded(server.ws)).collect();
    let (status, answer, _) = try_upgrade(server.ws);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    echoes(&mut held[0], b"first");
    echoes(held.last_mut().unwrap(), b"last");
}

#[test]
fn clients_get_503_when_the_process_is_out_of_descriptors_then_service_resumes() {
    let server = spawn_binary(env!("CARGO_BIN_EXE_wsecho"));
    let mut first = raw_upgraded(server.ws);
    echoes(&mut first, b"before");

    // Something else has taken the descriptors: the limit drops to what is open, plus two.
    let pid = server.child.id() as libc::pid_t;
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    // SAFETY: prlimit only reads the struct we pass, for a child of ours.
    let lowered = unsafe {
        let limit = open_file_limit(open + 2);
        libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut())
    };
    assert_eq!(lowered, 0, "{}", std::io::Error::last_os_error());

    let (mut admitted, mut refused) = (Vec::new(), 0);
    for _ in 0..20 {
        let (status, answer, stream) = try_upgrade(server.ws);
        match status {
            101 => admitted.push(stream),
            503 => {
                assert!(answer.contains("out of descriptors"), "{answer}");
                refused += 1;
            }
            _ => panic!("neither served nor refused: {answer}"),
        }
    }
    assert!(refused >= 15, "{refused} of 20 refused");
    echoes(&mut first, b"still served");
    for stream in &mut admitted {
        echoes(stream, b"admitted");
    }

    // Those admitted leave: their descriptors serve newcomers again.
    drop(admitted);
    let resumed = (0..100).any(|_| match try_upgrade(server.ws) {
        (101, _, mut stream) => {
            echoes(&mut stream, b"after");
            true
        }
        _ => {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(resumed, "service resumed once connections closed");
}
