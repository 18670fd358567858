//! Programs per connection (`Config::programs`, `--run`): real python3 programs, one per
//! connection: their environment, lines both ways in order, binary mode, how each side's end
//! ends the other, and that a program never outlives its connection or the server.
mod common;

use common::*;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use wsecho::{Config, Program, Routes, Server};

/// A python3 program of the test's own, in its scratch folder.
fn script(name: &str, body: &str) -> String {
    let path = scratch(&format!("program-{name}")).join("program.py");
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

fn program(path: &str, command: &[&str]) -> Program {
    Program {
        path: path.to_string(),
        command: command.iter().map(|word| word.to_string()).collect(),
        binary: false,
    }
}

fn serve(programs: Vec<Program>) -> Server {
    serve_with(Config {
        programs,
        program_grace: Duration::from_millis(300),
        ..config()
    })
}

fn serve_with(config: Config) -> Server {
    Server::start_with(config, Routes::new()).expect("starts")
}

/// The process `pid` is gone: exited and reaped (a zombie still has its /proc entry).
fn gone(pid: u32) -> bool {
    !PathBuf::from(format!("/proc/{pid}")).exists()
}

fn text(message: Message) -> String {
    message.into_text().expect("a text message").to_string()
}

const CAT: &str = "import sys\nfor line in sys.stdin:\n    print(line, end='', flush=True)\n";

const PRINT_PID_AND_WAIT: &str =
    "import os, sys, time\nprint(os.getpid(), flush=True)\nsys.stdin.read()\ntime.sleep(1000)\n";

#[test]
fn the_program_sees_the_request_in_cgi_variables_and_little_else() {
    let env = script(
        "env",
        "import json, os\nprint(json.dumps(dict(os.environ)), flush=True)\n",
    );
    let server = serve_with(Config {
        programs: vec![program("/env", &["python3", &env])],
        passenv: vec!["CARGO_MANIFEST_DIR".to_string()],
        ..config()
    });
    let addr = server.ws_addr();
    let mut request = format!("ws://{addr}/env?x=1&y=2")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("X-Token", "secret-1".parse().unwrap());
    let (mut client, _) = tungstenite::client::client(request, tcp(addr)).unwrap();
    let seen: serde_json::Value = serde_json::from_str(&text(next_message(&mut client))).unwrap();
    let var = |name: &str| seen[name].as_str().map(str::to_string);
    assert_eq!(var("REMOTE_ADDR").as_deref(), Some("127.0.0.1"));
    assert!(var("REMOTE_PORT").unwrap().parse::<u16>().unwrap() > 0);
    assert_eq!(var("SERVER_NAME").as_deref(), Some("127.0.0.1"));
    assert_eq!(var("SERVER_PORT"), Some(addr.port().to_string()));
    assert_eq!(var("REQUEST_METHOD").as_deref(), Some("GET"));
    assert_eq!(var("REQUEST_URI").as_deref(), Some("/env?x=1&y=2"));
    assert_eq!(var("SCRIPT_NAME").as_deref(), Some("/env"));
    assert_eq!(var("PATH_INFO").as_deref(), Some(""));
    assert_eq!(var("QUERY_STRING").as_deref(), Some("x=1&y=2"));
    assert_eq!(
        var("GATEWAY_INTERFACE").as_deref(),
        Some("websocketd-CGI/0.1")
    );
    assert!(var("SERVER_SOFTWARE").unwrap().starts_with("wsecho/"));
    assert_eq!(var("HTTP_X_TOKEN").as_deref(), Some("secret-1"));
    assert_eq!(var("HTTP_UPGRADE").as_deref(), Some("websocket"));
    assert_eq!(var("HTTPS"), None);
    assert!(var("PATH").is_some());
    assert_eq!(
        var("CARGO_MANIFEST_DIR"),
        std::env::var("CARGO_MANIFEST_DIR").ok()
    );
    // Nothing else of the server's own environment.
    assert_eq!(var("HOME"), None);
    assert_eq!(var("RUST_LOG"), None);
    assert_eq!(expect_close(&mut client), CloseCode::Normal);
    server.shutdown();
}

#[test]
fn behind_a_trusted_proxy_the_client_it_names_is_the_remote_address() {
    let env = script(
        "env-proxy",
        "import os\nprint(os.environ['REMOTE_ADDR'], flush=True)\n",
    );
    let server = serve_with(Config {
        programs: vec![program("/who", &["python3", &env])],
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..config()
    });
    let addr = server.ws_addr();
    let mut request = format!("ws://{addr}/who").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("X-Forwarded-For", "203.0.113.9".parse().unwrap());
    let (mut client, _) = tungstenite::client::client(request, tcp(addr)).unwrap();
    assert_eq!(text(next_message(&mut client)), "203.0.113.9");
    server.shutdown();
}

#[test]
fn a_thousand_lines_each_way_arrive_in_order_with_their_utf8_intact() {
    let cat = script("cat", CAT);
    let server = serve(vec![program("/cat", &["python3", &cat])]);
    let mut client = connect_to(server.ws_addr(), "/cat").unwrap();
    let lines: Vec<String> = (0..1000).map(|n| format!("{n} héllo wörld ✓ 𝄞")).collect();
    for line in &lines {
        client.send(Message::text(line.as_str())).unwrap();
    }
    for line in &lines {
        assert_eq!(&text(next_message(&mut client)), line);
    }
    client.close(None).unwrap();
    server.shutdown();
}

#[test]
fn binary_mode_passes_bytes_exactly() {
    let relay = script(
        "relay",
        "import os\nwhile True:\n    data = os.read(0, 65536)\n    if not data:\n        break\n    os.write(1, data)\n",
    );
    let server = serve(vec![Program {
        binary: true,
        ..program("/bytes", &["python3", &relay])
    }]);
    let mut client = connect_to(server.ws_addr(), "/bytes").unwrap();
    let sent: Vec<u8> = (0..200_000u32).map(|n| (n * 7 % 256) as u8).collect();
    for piece in sent.chunks(10_000) {
        client.send(Message::binary(piece.to_vec())).unwrap();
    }
    let mut received = Vec::new();
    while received.len() < sent.len() {
        match next_message(&mut client) {
            Message::Binary(data) => received.extend_from_slice(&data),
            other => panic!("expected bytes, got {other:?}"),
        }
    }
    assert_eq!(received, sent);
    // A text message is not what this path takes.
    client.send(Message::text("words")).unwrap();
    assert_eq!(expect_close(&mut client), CloseCode::Unsupported);
    server.shutdown();
}

#[test]
fn a_program_that_exits_closes_with_1000_for_status_0_and_1011_otherwise() {
    let bye = script("bye", "print('first')\nprint('last', end='')\n");
    let fail = script("fail", "import sys\nprint('trying')\nsys.exit(3)\n");
    let server = serve(vec![
        program("/bye", &["python3", &bye]),
        program("/fail", &["python3", &fail]),
    ]);
    let mut client = connect_to(server.ws_addr(), "/bye").unwrap();
    assert_eq!(text(next_message(&mut client)), "first");
    // An unfinished last line still goes out.
    assert_eq!(text(next_message(&mut client)), "last");
    assert_eq!(expect_close(&mut client), CloseCode::Normal);

    let mut client = connect_to(server.ws_addr(), "/fail").unwrap();
    assert_eq!(text(next_message(&mut client)), "trying");
    match next_message(&mut client) {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Error);
            assert_eq!(frame.reason.as_str(), "program exited with status 3");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    server.shutdown();
}

#[test]
fn a_binary_message_on_a_text_path_gets_1003() {
    let cat = script("cat-1003", CAT);
    let server = serve(vec![program("/cat", &["python3", &cat])]);
    let mut client = connect_to(server.ws_addr(), "/cat").unwrap();
    client.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(expect_close(&mut client), CloseCode::Unsupported);
    server.shutdown();
}

#[test]
fn when_the_client_goes_its_program_ends_and_is_reaped() {
    let waiter = script("waiter", PRINT_PID_AND_WAIT);
    let server = serve(vec![program("/wait", &["python3", &waiter])]);
    let mut client = connect_to(server.ws_addr(), "/wait").unwrap();
    let pid: u32 = text(next_message(&mut client)).parse().unwrap();
    assert!(!gone(pid));
    // Vanishes without a close frame.
    drop(client);
    assert!(
        eventually(|| gone(pid)),
        "the program {pid} outlived its client"
    );
    server.shutdown();
}

#[test]
fn a_program_that_ignores_sigterm_is_killed_after_the_grace() {
    let stubborn = script(
        "stubborn",
        "import os, signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(os.getpid(), flush=True)\nsys.stdin.read()\ntime.sleep(1000)\n",
    );
    let server = serve(vec![program("/stubborn", &["python3", &stubborn])]);
    let mut client = connect_to(server.ws_addr(), "/stubborn").unwrap();
    let pid: u32 = text(next_message(&mut client)).parse().unwrap();
    client.close(None).unwrap();
    assert!(
        eventually(|| gone(pid)),
        "{pid} survived SIGTERM and SIGKILL"
    );
    server.shutdown();
}

#[test]
fn shutdown_with_fifty_programs_running_leaves_none_behind() {
    let waiter = script("waiter-50", PRINT_PID_AND_WAIT);
    let server = serve_with(Config {
        programs: vec![program("/wait", &["python3", &waiter])],
        // Longer than the server's drain: shutdown must not wait for it.
        program_grace: Duration::from_secs(30),
        ..config()
    });
    let mut clients: Vec<_> = (0..50)
        .map(|_| connect_to(server.ws_addr(), "/wait").unwrap())
        .collect();
    let pids: Vec<u32> = clients
        .iter_mut()
        .map(|client| text(next_message(client)).parse().unwrap())
        .collect();
    let summary = server.shutdown();
    assert_eq!(summary.stragglers, 0);
    for pid in pids {
        assert!(gone(pid), "program {pid} left behind");
    }
    for client in &mut clients {
        assert_eq!(expect_close(client), CloseCode::Away);
    }
}

#[test]
fn a_program_printing_to_a_client_that_never_reads_is_cut_off_while_others_go_on() {
    let flood = script(
        "flood",
        "import os, sys\nprint(os.getpid(), flush=True)\nline = 'x' * 1000 + '\\n'\nwhile True:\n    sys.stdout.write(line)\n",
    );
    let cat = script("cat-flood", CAT);
    let server = serve_with(Config {
        programs: vec![
            program("/flood", &["python3", &flood]),
            program("/cat", &["python3", &cat]),
        ],
        max_queue: 64 * 1024,
        program_grace: Duration::from_millis(300),
        ..config()
    });
    let mut sleeper = tcp_reading_little(server.ws_addr());
    let request = upgrade_request("/flood", "");
    std::io::Write::write_all(&mut sleeper, request.as_bytes()).unwrap();
    // The 101, then the first frame: the pid.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        sleeper.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let (_, _, payload) = read_server_frame(&mut sleeper).unwrap();
    let pid: u32 = String::from_utf8(payload).unwrap().parse().unwrap();
    // Never reads again: the program is cut off at the queue limit, and ends.
    assert!(eventually(|| gone(pid)), "the flood {pid} goes on");
    let mut other = connect_to(server.ws_addr(), "/cat").unwrap();
    other.send(Message::text("still here")).unwrap();
    assert_eq!(text(next_message(&mut other)), "still here");
    drop(sleeper);
    server.shutdown();
}

#[test]
fn a_line_over_the_size_limit_gets_1009() {
    let long = script(
        "long",
        "print('y' * 5000, flush=True)\nimport time\ntime.sleep(1000)\n",
    );
    let server = serve_with(Config {
        programs: vec![program("/long", &["python3", &long])],
        max_message_size: 1000,
        program_grace: Duration::from_millis(300),
        ..config()
    });
    let mut client = connect_to(server.ws_addr(), "/long").unwrap();
    assert_eq!(expect_close(&mut client), CloseCode::Size);
    server.shutdown();
}

#[test]
fn two_hundred_connections_each_with_its_own_program_all_echo() {
    let server = serve(vec![program("/cat", &["cat"])]);
    let mut clients: Vec<_> = (0..200)
        .map(|_| connect_to(server.ws_addr(), "/cat").unwrap())
        .collect();
    for (n, client) in clients.iter_mut().enumerate() {
        client.send(Message::text(format!("hello {n}"))).unwrap();
    }
    for (n, client) in clients.iter_mut().enumerate() {
        assert_eq!(text(next_message(client)), format!("hello {n}"));
    }
    server.shutdown();
}

#[test]
fn a_program_that_cannot_start_gets_1011_and_one_that_is_missing_is_refused_at_start() {
    let folder = scratch("program-gone");
    let runnable = folder.join("run.sh");
    std::fs::write(&runnable, "#!/bin/sh\necho hi\n").unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&runnable, executable).unwrap();
    let path = runnable.to_string_lossy().into_owned();
    let server = serve(vec![program("/gone", &[&path])]);
    std::fs::remove_file(&runnable).unwrap();
    let mut client = connect_to(server.ws_addr(), "/gone").unwrap();
    match next_message(&mut client) {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Error);
            assert!(frame.reason.starts_with("cannot start"), "{}", frame.reason);
        }
        other => panic!("expected a close, got {other:?}"),
    }
    server.shutdown();

    let refused = Server::start_with(
        Config {
            programs: vec![program("/gone", &[&path])],
            ..config()
        },
        Routes::new(),
    );
    let error = refused
        .err()
        .expect("a missing program is refused")
        .to_string();
    assert!(
        error.contains("/gone runs") && error.contains("cannot be found"),
        "{error}"
    );
}

#[test]
fn config_json_lists_the_program_paths() {
    let cat = script("cat-config", CAT);
    let server = serve_with(Config {
        programs: vec![program("/cat", &["python3", &cat])],
        ..config()
    });
    let page: SocketAddr = server.http_addr().unwrap();
    let answer = raw_exchange(
        page,
        b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains(r#""paths":["/cat"]"#), "{answer}");
    server.shutdown();
}
