//! The chat room across instances (feature `redis`): real Redis (Debian's redis-server,
//! started here on a free loopback port), several wsecho instances, clients spread over them.
//! Run by `cargo test --features redis`.
#![cfg(feature = "redis")]

mod common;

use common::{Client, PATIENCE, config, connect_to, next_message, spawn_command};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::Message;
use wsecho::Server;

/// A redis-server of the test's own, on a free loopback port; killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// With more of redis-server's options.
    fn start_with(options: &[&str]) -> Redis {
        // A port free a moment ago; should another process take it first, try another.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(redis) = Redis::start_on(port, options) {
                return redis;
            }
        }
        panic!("redis-server (Debian's redis-server package) would not start");
    }

    fn start_on(port: u16, options: &[&str]) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(options)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package)");
        let mut redis = Redis { child, port };
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if redis.child.try_wait().unwrap().is_some() {
                return None;
            }
            if redis.answers() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = redis.child.kill();
        None
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(PATIENCE));
        let mut reply = [0u8; 7];
        // One that wants a password answers too, with -NOAUTH.
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && (&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start again on the same port (a restart: everything it held is gone).
    fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(again) = Redis::start_on(self.port, &[]) {
                *self = again;
                return;
            }
            assert!(Instant::now() < deadline, "redis-server would not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn instance(redis: &Redis) -> Server {
    Server::start(wsecho::Config {
        redis: Some(redis.url()),
        ..config()
    })
    .expect("an instance starts")
}

fn say(client: &mut Client, value: Value) {
    client.send(Message::text(value.to_string())).unwrap();
}

fn hear(client: &mut Client) -> Value {
    let text = next_message(client).into_text().unwrap();
    serde_json::from_str(text.as_str()).unwrap()
}

/// The next `said`, skipping others coming and going.
fn hear_said(client: &mut Client) -> Value {
    loop {
        let heard = hear(client);
        match heard["type"].as_str() {
            Some("joined" | "left") => continue,
            _ => return heard,
        }
    }
}

fn join(addr: SocketAddr, name: &str) -> (Client, Value) {
    let mut client = connect_to(addr, "/chat").unwrap();
    say(&mut client, json!({"type": "join", "name": name}));
    let welcome = hear(&mut client);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

/// The room's members as a newcomer to `addr` is told them (itself left out).
fn members_seen_from(addr: SocketAddr) -> Vec<String> {
    let (mut probe, welcome) = join(addr, "probe");
    let mut names: Vec<String> = welcome["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_string())
        .filter(|name| name != welcome["name"].as_str().unwrap())
        .collect();
    names.sort();
    let _ = probe.close(None);
    names
}

/// Poll (every 100 ms, at most PATIENCE) until `addr`'s newcomers are told exactly `expected`.
fn await_members(addr: SocketAddr, expected: &[String]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = members_seen_from(addr);
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} sees {seen:?}, not {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn thirty_members_on_three_instances_hear_every_message_once_in_each_senders_order() {
    let redis = Redis::start();
    let instances: Vec<Server> = (0..3).map(|_| instance(&redis)).collect();
    let mut names: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    let mut members: Vec<Client> = names
        .iter()
        .enumerate()
        .map(|(i, name)| join(instances[i % 3].ws_addr(), name).0)
        .collect();
    names.sort();
    // Every instance counts the same 30.
    for server in &instances {
        await_members(server.ws_addr(), &names);
    }
    // Five talkers, on all three instances, ten messages each.
    let talkers = [0, 1, 2, 13, 29];
    for n in 0..10 {
        for &talker in &talkers {
            say(
                &mut members[talker],
                json!({"type": "say", "text": format!("{talker}:{n}")}),
            );
        }
    }
    for (index, member) in members.iter_mut().enumerate() {
        let mut next: HashMap<usize, usize> = HashMap::new();
        for _ in 0..talkers.len() * 10 {
            let said = hear_said(member);
            assert_eq!(said["type"], "said", "member {index}: {said}");
            let text = said["text"].as_str().unwrap();
            let (talker, n) = text.split_once(':').unwrap();
            let expected = next.entry(talker.parse().unwrap()).or_default();
            assert_eq!(
                n.parse::<usize>().unwrap(),
                *expected,
                "member {index}: {text}"
            );
            *expected += 1;
        }
        assert!(next.values().all(|&n| n == 10), "member {index}: {next:?}");
    }
    // Nothing twice: one more from a talker comes next, for everyone.
    say(&mut members[13], json!({"type": "say", "text": "last"}));
    for member in &mut members {
        assert_eq!(hear_said(member)["text"], "last");
    }
    for server in instances {
        server.shutdown();
    }
}

/// `from` says one numbered message after another (every 100 ms, at most PATIENCE) until `to`
/// hears one: what was published while an instance was cut off is lost to it.
fn say_until_heard(from: &mut Client, to: &mut Client) {
    let deadline = Instant::now() + PATIENCE;
    to.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "cross-instance delivery did not resume"
        );
        say(
            from,
            json!({"type": "say", "text": format!("anyone? {attempt}")}),
        );
        loop {
            match to.read() {
                Ok(Message::Text(text)) if text.contains("anyone?") => {
                    to.get_mut().set_read_timeout(Some(PATIENCE)).unwrap();
                    return;
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(error))
                    if error.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    break;
                }
                Err(error) => panic!("the listener's connection: {error}"),
            }
        }
    }
}

#[test]
fn without_redis_each_instance_serves_its_own_and_with_it_back_they_span_again() {
    let mut redis = Redis::start();
    let (one, two) = (instance(&redis), instance(&redis));
    let (mut ann, _) = join(one.ws_addr(), "ann");
    let (mut al, _) = join(one.ws_addr(), "al");
    let (mut bob, _) = join(two.ws_addr(), "bob");
    await_members(one.ws_addr(), &["al".into(), "ann".into(), "bob".into()]);

    redis.stop();
    // Local delivery goes on, and nobody is dropped.
    say(&mut ann, json!({"type": "say", "text": "redis is gone"}));
    assert_eq!(hear_said(&mut ann)["text"], "redis is gone");
    assert_eq!(hear_said(&mut al)["text"], "redis is gone");

    redis.restart();
    // Back (after their backoff), each instance hears the other again, both ways.
    say_until_heard(&mut ann, &mut bob);
    say_until_heard(&mut bob, &mut ann);
    // The members list spans both again (Redis lost it; each instance wrote its own again).
    await_members(two.ws_addr(), &["al".into(), "ann".into(), "bob".into()]);
    one.shutdown();
    two.shutdown();
}

#[test]
fn an_instance_killed_outright_leaves_the_others_serving_and_its_members_vanish() {
    let redis = Redis::start();
    let survivor = instance(&redis);
    let mut doomed = spawn_command(
        Command::new(env!("CARGO_BIN_EXE_wsecho")),
        &["--redis", &redis.url()],
    );
    let (mut ann, _) = join(survivor.ws_addr(), "ann");
    let _gone: Vec<Client> = ["x", "y", "z"]
        .iter()
        .map(|name| join(doomed.ws, name).0)
        .collect();
    let everyone: Vec<String> = ["ann", "x", "y", "z"].map(String::from).to_vec();
    await_members(survivor.ws_addr(), &everyone);

    doomed.child.kill().unwrap();
    let _ = doomed.child.wait();
    // Within the expiry (6 s) the list drops them; the survivor serves on meanwhile.
    await_members(survivor.ws_addr(), &["ann".to_string()]);
    say(&mut ann, json!({"type": "say", "text": "still here"}));
    assert_eq!(hear_said(&mut ann)["text"], "still here");
    survivor.shutdown();
}

#[test]
fn an_apps_named_room_spans_the_instances_that_share_redis() {
    let redis = Redis::start();
    let listener = |client: &mut wsecho::Connection| -> Result<(), wsecho::Error> {
        client.room("news").join(&client.sender());
        while client.receive()?.is_some() {}
        Ok(())
    };
    let news = |redis: &Redis| {
        let config = wsecho::Config {
            redis: Some(redis.url()),
            ..config()
        };
        Server::start_with(config, wsecho::Routes::new().route("/news", listener)).unwrap()
    };
    let (one, two) = (news(&redis), news(&redis));
    let mut reader = connect_to(two.ws_addr(), "/news").unwrap();
    let deadline = Instant::now() + PATIENCE;
    while two.room("news").is_empty() {
        assert!(Instant::now() < deadline, "the reader never joined");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Published by one instance's own thread, heard on the other's.
    one.room("news").broadcast("from one");
    assert_eq!(next_message(&mut reader), Message::text("from one"));
    one.shutdown();
    two.shutdown();
}

#[test]
fn a_publish_on_one_instance_reaches_the_rooms_members_on_every_instance_once() {
    let redis = Redis::start();
    let publishing = |redis: &Redis| {
        Server::start(wsecho::Config {
            redis: Some(redis.url()),
            publish_token: Some("t0ken".to_string()),
            ..config()
        })
        .unwrap()
    };
    let (one, two) = (publishing(&redis), publishing(&redis));
    let mut here = connect_to(one.ws_addr(), "/rooms/news").unwrap();
    let mut there = connect_to(two.ws_addr(), "/rooms/news").unwrap();
    let deadline = Instant::now() + PATIENCE;
    while one.room("news").is_empty() || two.room("news").is_empty() {
        assert!(Instant::now() < deadline, "the members never joined");
        std::thread::sleep(Duration::from_millis(10));
    }
    for n in 0..5 {
        let mut page = TcpStream::connect(one.http_addr().unwrap()).unwrap();
        page.set_read_timeout(Some(PATIENCE)).unwrap();
        let body = format!("flash {n}");
        write!(
            page,
            "POST /publish/news HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        page.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    for n in 0..5 {
        assert_eq!(next_message(&mut here), Message::text(format!("flash {n}")));
        assert_eq!(
            next_message(&mut there),
            Message::text(format!("flash {n}"))
        );
    }
    // Once each: the next thing either hears is the next publish.
    one.room("news").broadcast("after");
    assert_eq!(next_message(&mut here), Message::text("after"));
    assert_eq!(next_message(&mut there), Message::text("after"));
    one.shutdown();
    two.shutdown();
}

#[test]
fn while_redis_stops_answering_joins_and_leaves_do_not_wait_in_line_for_it() {
    let redis = Redis::start();
    let (first, second) = (instance(&redis), instance(&redis));
    let (_ann, _) = join(second.ws_addr(), "ann");
    await_members(first.ws_addr(), &["ann".to_string()]);

    // Redis stops answering (its process stopped: connections open, replies never come).
    // SAFETY: kill(2) with our own child's pid.
    unsafe { libc::kill(redis.child.id() as libc::pid_t, libc::SIGSTOP) };
    let began = Instant::now();
    let joins: Vec<_> = (0..20)
        .map(|n| {
            let addr = first.ws_addr();
            std::thread::spawn(move || join(addr, &format!("member {n}")))
        })
        .collect();
    let joined: Vec<_> = joins.into_iter().map(|join| join.join().unwrap()).collect();
    let took = began.elapsed();
    // Before, each waited its turn for a query with a 1 s timeout: 20 joins took about 8 s.
    // Now at most one waits (250 ms) and the rest answer from what is known.
    assert!(
        took < Duration::from_secs(4),
        "20 joins took {took:?} while Redis was stopped"
    );
    drop(joined); // 20 leaves, the same way
    // SAFETY: as above.
    unsafe { libc::kill(redis.child.id() as libc::pid_t, libc::SIGCONT) };
    // Once Redis answers again, rooms span both instances again.
    await_members(first.ws_addr(), &["ann".to_string()]);
}

/// A Redis that answers whatever it is sent with `$4000000000` and then zeros, as fast as it
/// is read; what it managed to send on each connection is counted. Stops with the test.
struct HostileRedis {
    port: u16,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

/// Most it sends on one connection, should nothing stop it: well past any limit.
const HOSTILE_REPLY: u64 = 512 << 20;

impl HostileRedis {
    fn start() -> HostileRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let counts = sent.clone();
        std::thread::spawn(move || {
            // Bounded: a few connections a second (backoff) for the length of a test.
            for stream in listener.incoming().take(200) {
                let Ok(mut stream) = stream else { continue };
                let counts = counts.clone();
                std::thread::spawn(move || {
                    stream.set_write_timeout(Some(PATIENCE)).unwrap();
                    let mut command = [0u8; 256];
                    let _ = stream.read(&mut command);
                    let mut sent = 0u64;
                    let zeros = vec![0u8; 64 * 1024];
                    if stream.write_all(b"$4000000000\r\n").is_ok() {
                        while sent < HOSTILE_REPLY && stream.write_all(&zeros).is_ok() {
                            sent += zeros.len() as u64;
                        }
                    }
                    counts.lock().unwrap().push(sent);
                });
            }
        });
        HostileRedis { port, sent }
    }
}

#[test]
fn a_redis_that_sends_a_huge_reply_is_cut_off_at_the_limit_and_rooms_go_on_locally() {
    let hostile = HostileRedis::start();
    let url = format!("redis://127.0.0.1:{}", hostile.port);
    // Replies may take --max-message-size plus 1 MiB: 2 MiB here.
    let wsecho = spawn_command(
        Command::new(env!("CARGO_BIN_EXE_wsecho")),
        &["--redis", &url, "--max-message-size", "1048576"],
    );
    let warned = |line: &String| line.contains("redis at") && line.contains("failed");
    let warning = match wsecho.startup_log.iter().find(|line| warned(line)) {
        Some(line) => line.clone(),
        None => wsecho.log_until("failed").pop().unwrap(),
    };
    assert!(
        warning.contains("a reply larger than 2097152 bytes"),
        "{warning}"
    );
    // Both of wsecho's links (the publisher's and the subscriber's) were cut off, each after
    // at most the limit plus what the sockets' buffers hold, not after 512 MiB.
    let deadline = Instant::now() + PATIENCE;
    while hostile.sent.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "wsecho kept reading");
        std::thread::sleep(Duration::from_millis(20));
    }
    for sent in hostile.sent.lock().unwrap().iter() {
        assert!(*sent < 64 << 20, "one connection took {sent} bytes");
    }
    assert!(common::resident_mib(wsecho.child.id()) < 128.0);
    // The chat room serves this instance's members meanwhile.
    let (mut ann, welcome) = join(wsecho.ws, "ann");
    assert_eq!(welcome["members"], json!(["ann"]));
    say(&mut ann, json!({"type": "say", "text": "still here"}));
    assert_eq!(hear_said(&mut ann)["text"], "still here");
}

#[test]
fn a_redis_that_wants_a_password_is_reached_by_tcp_and_by_its_unix_socket_in_one_database() {
    let socket = std::env::temp_dir().join(format!("wsecho-redis-{}.sock", std::process::id()));
    let socket_path = socket.display().to_string();
    let redis = Redis::start_with(&[
        "--requirepass",
        "a p@ss",
        "--unixsocket",
        &socket_path,
        "--unixsocketperm",
        "700",
    ]);
    let start = |url: String| {
        Server::start(wsecho::Config {
            redis: Some(url),
            ..config()
        })
        .expect("an instance starts")
    };
    // The password %-escaped in the URL; database 3 for both, one by its socket.
    let by_tcp = start(format!("redis://:a%20p%40ss@127.0.0.1:{}/3", redis.port));
    let by_socket = start(format!("unix://{socket_path}?db=3&pass=a%20p%40ss"));
    let (_ann, _) = join(by_tcp.ws_addr(), "ann");
    await_members(by_socket.ws_addr(), &["ann".to_string()]);
    let (_bob, _) = join(by_socket.ws_addr(), "bob");
    // (Waited for: the probes that look leave a moment after they have looked.)
    await_members(by_tcp.ws_addr(), &["ann".to_string(), "bob".to_string()]);
    by_tcp.shutdown();
    by_socket.shutdown();
    let _ = std::fs::remove_file(&socket);
}
