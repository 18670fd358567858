//! The chat room on `/chat`, through its JSON wire protocol, as any client would speak it.
mod common;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

fn say(client: &mut Client, value: Value) {
    client.send(Message::text(value.to_string())).unwrap();
}

/// The next message, as JSON.
fn hear(client: &mut Client) -> Value {
    let text = next_message(client).into_text().unwrap();
    serde_json::from_str(text.as_str()).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

fn join(server: &wsecho::Server, name: &str) -> (Client, Value) {
    let mut client = connect_to(server.ws_addr(), "/chat").unwrap();
    say(&mut client, json!({"type": "join", "name": name}));
    let welcome = hear(&mut client);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

#[test]
fn two_people_chat() {
    let server = start(config());
    let (mut ann, welcome) = join(&server, "  ann ");
    assert_eq!(
        welcome,
        json!({"type": "welcome", "name": "ann", "members": ["ann"]})
    );
    let (mut bob, welcome) = join(&server, "bob");
    assert_eq!(welcome["members"], json!(["ann", "bob"]));
    assert_eq!(
        hear(&mut ann),
        json!({"type": "joined", "name": "bob", "count": 2})
    );

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    say(
        &mut ann,
        json!({"type": "say", "text": "hi bob", "mood": "ignored"}),
    );
    for client in [&mut ann, &mut bob] {
        let said = hear(client);
        assert_eq!(said["type"], "said");
        assert_eq!(said["from"], "ann");
        assert_eq!(said["text"], "hi bob");
        let at = said["at"].as_u64().unwrap();
        assert!(at >= before && at < before + 60_000, "{said}");
    }

    bob.close(None).unwrap();
    assert_eq!(
        hear(&mut ann),
        json!({"type": "left", "name": "bob", "count": 1})
    );
    server.shutdown();
}

#[test]
fn a_taken_name_gets_a_number_and_a_vanished_member_is_announced() {
    let server = start(config());
    let (mut first, _) = join(&server, "sam");
    let (second, welcome) = join(&server, "sam");
    assert_eq!(welcome["name"], "sam 2");
    assert_eq!(hear(&mut first)["name"], "sam 2");
    // Gone without a close frame: still announced.
    drop(second);
    assert_eq!(
        hear(&mut first),
        json!({"type": "left", "name": "sam 2", "count": 1})
    );
    server.shutdown();
}

#[test]
fn mistakes_get_an_error_for_that_client_alone_and_the_connection_stays_open() {
    let server = start(config());
    let (mut witness, _) = join(&server, "witness");
    let mut client = connect_to(server.ws_addr(), "/chat").unwrap();
    let long = "x".repeat(4097);
    for (sent, reason_has) in [
        (Message::text("{not json"), "not JSON"),
        (Message::text(r#"{"type":"dance"}"#), "unknown type"),
        (Message::text(r#"{"type":"say","text":"hi"}"#), "join first"),
        (Message::text(r#"{"type":"join","name":""}"#), "1 to 32"),
        (
            Message::text(json!({"type":"join","name":"a".repeat(33)}).to_string()),
            "1 to 32",
        ),
        (Message::binary(vec![1, 2, 3]), "text messages"),
        // Names that would hide, or reorder the line they are shown on.
        (
            Message::text(json!({"type":"join","name":"admin\u{200B}"}).to_string()),
            "invisible",
        ),
        (
            Message::text(json!({"type":"join","name":"\u{202E}nimda"}).to_string()),
            "U+202E",
        ),
        (
            Message::text(json!({"type":"join","name":"\u{FEFF}"}).to_string()),
            "invisible",
        ),
    ] {
        client.send(sent).unwrap();
        let error = hear(&mut client);
        assert_eq!(error["type"], "error");
        let reason = error["reason"].as_str().unwrap();
        assert!(reason.contains(reason_has), "{reason}");
    }
    say(&mut client, json!({"type": "join", "name": "late"}));
    assert_eq!(hear(&mut client)["type"], "welcome");
    say(&mut client, json!({"type": "say", "text": long}));
    assert!(
        hear(&mut client)["reason"]
            .as_str()
            .unwrap()
            .contains("4096")
    );
    say(&mut client, json!({"type": "join", "name": "again"}));
    assert!(
        hear(&mut client)["reason"]
            .as_str()
            .unwrap()
            .contains("already joined as late")
    );
    // The witness heard only the join, none of the mistakes.
    assert_eq!(
        hear(&mut witness),
        json!({"type": "joined", "name": "late", "count": 2})
    );
    say(&mut witness, json!({"type": "say", "text": "ok"}));
    assert_eq!(hear(&mut witness)["text"], "ok");
    server.shutdown();
}

#[test]
fn a_hostile_name_travels_as_a_json_string_unchanged() {
    let server = start(config());
    let (mut watcher, _) = join(&server, "watcher");
    let hostile = "<img src=x onerror=alert(1)>\"}]";
    let (mut mallory, welcome) = join(&server, hostile);
    assert_eq!(welcome["name"], hostile);
    assert_eq!(hear(&mut watcher)["name"], hostile);
    say(
        &mut mallory,
        json!({"type": "say", "text": "\u{202e}</script>"}),
    );
    let said = hear(&mut watcher);
    assert_eq!(said["from"], hostile);
    assert_eq!(said["text"], "\u{202e}</script>");
    server.shutdown();
}

#[test]
fn a_name_differing_only_in_case_is_taken() {
    let server = start(config());
    let (_admin, _) = join(&server, "admin");
    let (_other, welcome) = join(&server, "Admin");
    assert_eq!(welcome["name"], "Admin 2");
}
