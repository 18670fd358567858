//! The exchange with a program, over an in-memory client: its stdout read by either thread,
//! its lines and endings, and the names it is given.

use super::*;
use crate::protocol::connection::Ending as Ended;
use crate::server::TestClient;

const PATIENCE: Duration = Duration::from_secs(10);

fn shell(script: &str) -> impl Fn(&mut Connection) -> Result<(), Error> + Send + Sync {
    let program = Program {
        path: "/".to_string(),
        command: ["sh", "-c", script].map(String::from).to_vec(),
        binary: false,
    };
    let settings = Settings {
        grace: PATIENCE,
        passed: vec![(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        )],
        max_message_size: 64 * 1024,
        stdin_patience: PATIENCE,
    };
    move |client: &mut Connection| serve(client, &program, &settings)
}

fn texts(client: &mut TestClient) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some(message) = client.receive().unwrap() {
        texts.push(message.into_text().unwrap().to_string());
    }
    texts
}

/// Read by the thread all programs share (`/shared`) or by the connection's own
/// (`/unshared`, as when that thread cannot be had), the exchange is the same.
#[test]
fn either_thread_reading_stdout_gives_each_reply_in_order_then_what_was_left() {
    let script = "while read line; do [ \"$line\" = end ] && break; echo \"got $line\"; done; printf 'no newline'";
    for target in ["/shared", "/unshared"] {
        let mut client = TestClient::connect(shell(script), target).unwrap();
        for i in 0..100 {
            client.send(Message::text(format!("line {i}"))).unwrap();
            let reply = client.receive().unwrap().expect("a reply");
            assert_eq!(
                reply.into_text().unwrap().as_str(),
                format!("got line {i}"),
                "{target}"
            );
        }
        client.send(Message::text("end")).unwrap();
        assert_eq!(texts(&mut client), ["no newline"], "{target}");
        assert_eq!(
            client.finish(),
            Ended::ClosedByServer(1000, String::new()),
            "{target}"
        );
    }
}

/// A program that writes more than a pipe holds while its input is not yet all taken:
/// its output must be read meanwhile, or neither side would move.
#[test]
fn a_program_that_answers_before_it_has_read_everything_is_not_stuck() {
    let script = "head -c 200000 /dev/zero | tr '\\0' 'x' | fold -w 1000; echo; cat > /dev/null";
    for target in ["/shared", "/unshared"] {
        let mut client = TestClient::connect(shell(script), target).unwrap();
        let big = "y".repeat(60_000);
        for _ in 0..10 {
            client.send(Message::text(big.clone())).unwrap();
        }
        let mut lines = 0;
        while lines < 200 {
            let line = client
                .receive()
                .unwrap_or_else(|e| panic!("{target} {lines}: {e}"))
                .expect("a line");
            assert_eq!(line.into_text().unwrap().len(), 1000, "{target}");
            lines += 1;
        }
    }
}

#[test]
fn header_names_become_cgi_variables_and_strange_ones_are_left_out() {
    assert_eq!(header_variable("X-Token").as_deref(), Some("HTTP_X_TOKEN"));
    assert_eq!(header_variable("origin").as_deref(), Some("HTTP_ORIGIN"));
    assert_eq!(header_variable("x.evil"), None);
    assert_eq!(header_variable("a_b"), None);
}

#[test]
fn a_close_reason_is_cut_at_a_character_boundary() {
    let long = "é".repeat(100);
    let reason = cut(&long);
    assert!(reason.len() <= 123);
    assert!(long.starts_with(&reason));
}
