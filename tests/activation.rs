//! Socket activation: the `wsecho` binary serves the listening sockets it is given (systemd's
//! protocol, LISTEN_FDS), and a restart under a supervisor that holds them refuses nobody.
mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// The child's log lines, as they come.
fn log_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// The first line containing `text`, waiting at most PATIENCE.
fn wait_for(lines: &mpsc::Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with `{text}` within {PATIENCE:?}"),
        }
    }
}

fn terminate(child: &Child) {
    // SAFETY: kill(2) with our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn started_by_systemd_socket_activate_it_serves_the_page_echo_and_policy_sockets() {
    // systemd-socket-activate binds the ports itself and takes no port 0: ports just free,
    // tried again (bounded) if another program took one meanwhile.
    let (mut child, ports) = (1..=5)
        .find_map(|_| {
            let ports = [free_port(), free_port(), free_port()];
            let mut command = Command::new("systemd-socket-activate");
            for port in ports {
                command.arg("-l").arg(format!("127.0.0.1:{port}"));
            }
            let mut child = command
                .args(["--fdname=http:ws:policy", "-E", "RUST_LOG=info"])
                .arg(env!("CARGO_BIN_EXE_wsecho"))
                .args(["--max-per-address", "1000"])
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("systemd-socket-activate (Debian's systemd package; .ci/run installs it)");
            // It binds, then waits for the first client before starting wsecho.
            let page = SocketAddr::from(([127, 0, 0, 1], ports[0]));
            let bound = (0..200).any(|_| {
                thread::sleep(Duration::from_millis(10));
                TcpStream::connect(page).is_ok()
            });
            if !bound {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Some((child, ports))
        })
        .expect("systemd-socket-activate listening on three free ports");
    let lines = log_lines(&mut child);
    let [page, ws, policy] = ports.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));

    let mut request = tcp(page);
    request
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    request.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_for(&lines, "socket activation passed");

    let mut client = connect_to(ws, "/echo").expect("upgrade on the passed socket");
    client.send(Message::text("activated")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("activated"));

    let mut flash = tcp(policy);
    flash.write_all(b"<policy-file-request/>\0").unwrap();
    let mut reply = Vec::new();
    flash.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.contains(&format!("to-ports=\"{}\"", ws.port())),
        "{reply}"
    );

    terminate(&child);
    assert_eq!(expect_close(&mut client), CloseCode::Restart);
    wait_for(&lines, "closed with 1012 at shutdown");
    let status = wait_bounded(&mut child);
    assert!(status.success(), "exit status {status}");
}

/// One wsecho serving `listener` as fd 3, as a supervisor (systemd) starts it.
fn generation(listener: &TcpListener) -> Child {
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    // LISTEN_PID must name wsecho itself: the shell's pid, which exec keeps.
    command
        .arg("-c")
        .arg("export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=ws; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_wsecho"))
        .args([
            "--http",
            "off",
            "--policy-port",
            "0",
            "--max-per-address",
            "1000",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                // Already there: only let it through exec.
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    echoes: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// Connect, echo a few messages, close; again until `stop`. A close from the server must be
/// 1012; anything else (a refused connect, a failed upgrade, a dropped connection) is a failure.
fn keep_connecting(addr: SocketAddr, seen: &Seen, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut client = match connect_to(addr, "/echo") {
            Ok(client) => client,
            Err(error) => {
                seen.failures
                    .lock()
                    .unwrap()
                    .push(format!("connect: {error}"));
                return;
            }
        };
        for n in 0..5 {
            // A send may also fail once the server has closed: the close frame says why.
            let sent = client.send(Message::text(format!("{n}")));
            match client.read() {
                Ok(Message::Text(text)) if text.as_str() == n.to_string() => {
                    seen.echoes.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Message::Close(Some(frame))) if frame.code == CloseCode::Restart => break,
                other => {
                    let failure = format!("send: {sent:?}, then: {other:?}");
                    seen.failures.lock().unwrap().push(failure);
                    return;
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = client.close(None);
    }
}

/// Wait (bounded) until `condition` holds.
fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_restart_with_the_socket_held_refuses_nobody_and_closes_open_clients_with_1012() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut first = generation(&listener);
    let first_log = log_lines(&mut first);
    wait_for(&first_log, "socket activation passed");

    // Five clients stay open across the restart; twenty more keep connecting throughout.
    let mut holders: Vec<_> = (0..5)
        .map(|n| {
            let mut holder = connect_to(addr, "/echo").expect("upgrade");
            holder.send(Message::text(format!("holder {n}"))).unwrap();
            assert_eq!(
                next_message(&mut holder),
                Message::text(format!("holder {n}"))
            );
            holder
        })
        .collect();
    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || keep_connecting(addr, &seen, &stop))
        })
        .collect();
    until("echoes from the first process", || {
        seen.echoes.load(Ordering::SeqCst) >= 100
    });

    terminate(&first);
    for holder in &mut holders {
        assert_eq!(expect_close(holder), CloseCode::Restart);
    }
    let status = wait_bounded(&mut first);
    assert!(status.success(), "the first process exits 0: {status}");
    wait_for(&first_log, "closed with 1012 at shutdown");
    // Clients connecting now wait in the socket's queue for the next process.
    let mut second = generation(&listener);
    let before = seen.echoes.load(Ordering::SeqCst);
    until("echoes from the second process", || {
        seen.echoes.load(Ordering::SeqCst) >= before + 100
    });
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    terminate(&second);
    let status = wait_bounded(&mut second);
    assert!(status.success(), "the second process exits 0: {status}");

    let failures = seen.failures.lock().unwrap();
    assert!(failures.is_empty(), "clients failed: {failures:?}");
}
