//! The Redis client against a socket pair whose other end plays Redis.

use super::*;

/// A connection whose Redis is the other end of a socket pair, already holding `sent`.
fn answering(sent: &[u8], limit: usize) -> (Connection, UnixStream) {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.write_all(sent).unwrap();
    let connection = Connection {
        reader: BufReader::new(Stream::Unix(ours)),
        limit,
        timeout: Duration::from_secs(5),
    };
    (connection, theirs)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn replies_of_every_kind_are_read_in_order() {
    let sent = b"+OK\r\n-ERR no\r\n:42\r\n$5\r\nhe\r\no\r\n$-1\r\n*2\r\n$1\r\na\r\n:7\r\n*0\r\n";
    let (mut connection, _redis) = answering(sent, 1024);
    let expected = [
        Reply::Status("OK".into()),
        Reply::Failure("ERR no".into()),
        Reply::Integer(42),
        Reply::Bulk(b"he\r\no".to_vec()),
        Reply::Nil,
        Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Integer(7)]),
        Reply::Array(vec![]),
    ];
    for reply in expected {
        assert_eq!(connection.reply(soon()).unwrap(), reply);
    }
}

#[test]
fn a_pipeline_sends_every_command_and_reads_one_reply_each() {
    let (mut connection, mut redis) = answering(b"+PONG\r\n:1\r\n", 1024);
    let mut pipe = Commands::one(&[b"PING"]);
    pipe.add(&[b"SADD", b"key", b"two words"]);
    assert_eq!(
        connection.query(&pipe).unwrap(),
        [Reply::Status("PONG".into()), Reply::Integer(1)]
    );
    let mut received = vec![0; 64];
    let n = redis.read(&mut received).unwrap();
    assert_eq!(
        &received[..n],
        b"*1\r\n$4\r\nPING\r\n*3\r\n$4\r\nSADD\r\n$3\r\nkey\r\n$9\r\ntwo words\r\n"
    );
}

#[test]
fn a_refusal_is_an_error_once_every_reply_of_the_pipeline_is_read() {
    let (mut connection, _redis) = answering(b"-WRONGTYPE no\r\n+OK\r\n+PONG\r\n", 1024);
    let mut pipe = Commands::one(&[b"HSET"]);
    pipe.add(&[b"SET"]);
    match connection.query(&pipe) {
        Err(Error::Refused(message)) => assert_eq!(message, "WRONGTYPE no"),
        other => panic!("{other:?}"),
    }
    // Still in step: the next reply is the next command's.
    assert_eq!(
        connection.query(&Commands::one(&[b"PING"])).unwrap(),
        [Reply::Status("PONG".into())]
    );
}

#[test]
fn an_announced_length_past_the_limit_is_refused_before_anything_is_read() {
    let (mut connection, _redis) = answering(b"$4000000000\r\nabc", 1 << 20);
    assert!(matches!(connection.reply(soon()), Err(Error::TooLarge(_))));
    let (mut connection, _redis) = answering(b"*2147483647\r\n:1\r\n", 1 << 20);
    assert!(matches!(connection.reply(soon()), Err(Error::TooLarge(_))));
}

#[test]
fn many_small_strings_past_the_limit_together_are_refused() {
    let mut sent = b"*1000\r\n".to_vec();
    for _ in 0..1000 {
        sent.extend_from_slice(b"$10\r\n0123456789\r\n");
    }
    let (mut connection, _redis) = answering(&sent, 8 * 1024);
    assert!(matches!(connection.reply(soon()), Err(Error::TooLarge(_))));
    // The same reply within a larger limit is read whole.
    let (mut connection, _redis) = answering(&sent, 1 << 20);
    match connection.reply(soon()).unwrap() {
        Reply::Array(items) => assert_eq!(items.len(), 1000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_line_without_end_and_nesting_past_two_are_refused() {
    let (mut connection, _redis) = answering(&[b'+'; MAX_LINE + 10], 1 << 20);
    assert!(matches!(connection.reply(soon()), Err(Error::Protocol(_))));
    let (mut connection, _redis) = answering(b"*1\r\n*1\r\n*1\r\n:1\r\n", 1 << 20);
    assert!(matches!(connection.reply(soon()), Err(Error::Protocol(_))));
    for garbage in [&b"?what\r\n"[..], b"$abc\r\n", b"$3\r\nabcde", b"+OK\n"] {
        let (mut connection, _redis) = answering(garbage, 1 << 20);
        assert!(
            matches!(connection.reply(soon()), Err(Error::Protocol(_))),
            "{garbage:?}"
        );
    }
}

#[test]
fn a_reply_not_complete_by_the_deadline_is_a_timeout() {
    let (mut connection, _redis) = answering(b"$10\r\nabc", 1024);
    let error = connection
        .reply(Instant::now() + Duration::from_millis(50))
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let (mut connection, redis) = answering(b"$10\r\nabc", 1024);
    drop(redis);
    let error = connection.reply(soon()).unwrap_err();
    assert!(error.to_string().contains("closed"), "{error}");
}

#[test]
fn waiting_for_a_reply_ends_at_its_bound_or_when_one_arrives() {
    let (connection, mut redis) = answering(b"", 1024);
    assert!(
        !connection
            .wait_for_reply(Duration::from_millis(20))
            .unwrap()
    );
    redis.write_all(b":1\r\n").unwrap();
    assert!(connection.wait_for_reply(Duration::from_secs(5)).unwrap());
}

#[test]
fn addresses_take_the_forms_redis_urls_have() {
    let tcp = |target: &str, user: Option<&str>, password: Option<&str>, db| Address {
        target: Target::Tcp(target.into()),
        user: user.map(Into::into),
        password: password.map(Into::into),
        db,
    };
    let cases = [
        ("redis://10.0.0.5:6380", tcp("10.0.0.5:6380", None, None, 0)),
        ("redis://localhost", tcp("localhost:6379", None, None, 0)),
        ("redis://h:1/3", tcp("h:1", None, None, 3)),
        ("redis://:p%40ss@h:1", tcp("h:1", None, Some("p@ss"), 0)),
        (
            "redis://me:pw@[::1]:7/2",
            tcp("[::1]:7", Some("me"), Some("pw"), 2),
        ),
        ("redis://[::1]", tcp("[::1]:6379", None, None, 0)),
    ];
    for (url, expected) in cases {
        assert_eq!(Address::parse(url).unwrap(), expected, "{url}");
    }
    let unix = Address::parse("unix:///run/redis.sock?db=4&pass=a%26b").unwrap();
    assert_eq!(unix.target, Target::Unix("/run/redis.sock".into()));
    assert_eq!(unix.db, 4);
    assert_eq!(unix.password.as_deref(), Some("a&b"));
    assert_eq!(unix.to_string(), "/run/redis.sock (database 4)");
    assert_eq!(
        Address::parse("redis://:secret@h:1").unwrap().to_string(),
        "h:1"
    );
    for bad in [
        "http://h",
        "redis://",
        "redis://h:x",
        "redis://h/db",
        "unix://rel",
        "redis://u@h",
    ] {
        let error = Address::parse(bad).unwrap_err();
        assert!(error.contains("redis://HOST:PORT"), "{bad}: {error}");
    }
}
