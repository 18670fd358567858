//! The memory budget, against the real binary (so that its memory is its own): a message the
//! budget cannot hold closes its connection with 1013, everyone else carries on, and the
//! process stays within the budget plus its connections' baseline.
mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Instant;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

const MIB: usize = 1 << 20;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;
const CLOSE: u8 = 0x8;

fn spawn(options: &[&str]) -> Running {
    spawn_binary_with(env!("CARGO_BIN_EXE_wsecho"), options)
}

/// Send one fragment of a message that is never finished, then a Ping: the server answers
/// the Ping if it took the fragment, or closes with 1013 if the budget had no room for it.
fn fragment_taken(stream: &mut TcpStream, first: bool, payload: &[u8]) -> bool {
    let opcode = if first { 0x2 } else { 0x0 };
    stream
        .write_all(&client_fragment(opcode, false, payload))
        .unwrap();
    stream
        .write_all(&client_frame(PING, b"still there?"))
        .unwrap();
    loop {
        let (_, opcode, payload) = read_server_frame(stream).expect("a Pong or a close");
        match opcode {
            PONG => return true,
            CLOSE => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                assert_eq!(code, 1013, "{}", String::from_utf8_lossy(&payload[2..]));
                return false;
            }
            _ => continue,
        }
    }
}

fn echoes(client: &mut Client, message: Message) {
    client.send(message.clone()).unwrap();
    assert_eq!(next_message(client), message);
}

#[test]
fn unfinished_big_messages_past_the_budget_are_refused_and_others_carry_on() {
    let budget = 64 * MIB;
    let server = spawn(&[
        "--memory-budget",
        &budget.to_string(),
        "--max-message-size",
        &(48 * MIB).to_string(),
    ]);
    let pid = server.child.id();
    let mut attackers: Vec<TcpStream> = (0..200).map(|_| raw_upgraded(server.ws)).collect();
    let mut bystander = connect_to(server.ws, "/echo").expect("upgrade");
    echoes(&mut bystander, Message::text("before"));
    let baseline_kib = memory_kib(pid, "VmRSS");

    // Each attacker starts a 15 MiB message, a megabyte at a time, and never finishes it.
    let fragment = vec![0x5a; MIB];
    let (mut refused, mut taken) = (0, 0);
    let mut holding: Vec<usize> = (0..attackers.len()).collect();
    for round in 0..15 {
        holding.retain(|&i| {
            let took = fragment_taken(&mut attackers[i], round == 0, &fragment);
            if took {
                taken += 1;
            } else {
                refused += 1;
            }
            took
        });
    }
    assert!(refused > 0, "nobody was refused");
    let taken_bytes = taken * MIB;
    assert!(
        taken_bytes > budget / 2 && taken_bytes <= budget + 200 * 4096,
        "the server took {taken} MiB with a {} MiB budget",
        budget / MIB
    );

    // Someone new is still served, and so is the client that was there all along.
    let mut newcomer = connect_to(server.ws, "/echo").expect("upgrade while the budget is full");
    echoes(&mut newcomer, Message::text("a small message always fits"));
    echoes(&mut bystander, Message::text("after"));

    let peak_kib = memory_kib(pid, "VmHWM");
    let ceiling_kib = baseline_kib + (budget / 1024) as u64 + 16 * 1024;
    assert!(
        peak_kib <= ceiling_kib,
        "peak RSS {peak_kib} KiB, over the {} KiB baseline + budget + 16 MiB",
        baseline_kib
    );

    // Once the attackers are gone, the budget is whole again: a big message goes through.
    drop(attackers);
    let big = Message::binary(vec![7u8; 40 * MIB]);
    assert!(
        eventually(|| {
            let mut client = connect_to(server.ws, "/echo").expect("upgrade");
            client.send(big.clone()).is_ok() && matches!(client.read(), Ok(echo) if echo == big)
        }),
        "a 40 MiB message was never echoed after the attackers left"
    );
}

#[test]
fn a_client_that_never_reads_holds_its_echo_against_the_budget_until_it_is_cut_off() {
    let budget = 40 * MIB;
    let server = spawn(&[
        "--memory-budget",
        &budget.to_string(),
        "--max-message-size",
        &(24 * MIB).to_string(),
        "--ping-interval",
        "1",
    ]);
    // It sends a 24 MiB message and never reads the echo, which the socket buffers (a few
    // MiB at most) cannot take whole: the server is left writing it, holding 24 MiB.
    let mut never_reads = upgraded(tcp_reading_little(server.ws));
    never_reads
        .write_all(&client_frame(0x2, &vec![1u8; 24 * MIB]))
        .unwrap();

    // 24 + 20 MiB does not fit in 40: this one is refused, and says so.
    let mut second = connect_to(server.ws, "/echo").expect("upgrade");
    let _ = second.send(Message::binary(vec![2u8; 20 * MIB]));
    assert_eq!(expect_close(&mut second), CloseCode::Again);

    // Small messages go on meanwhile.
    let mut bystander = connect_to(server.ws, "/echo").expect("upgrade");
    echoes(&mut bystander, Message::text("unaffected"));

    // A client that reads nothing for two ping intervals is cut off; its 24 MiB come back.
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = server.log.recv_timeout(left) else {
            panic!("no log line says the client that never reads was cut off: {seen:#?}");
        };
        if line.contains("#1 ") && line.contains(" after ") {
            break line;
        }
        seen.push(line);
    };
    // Cut off by the server, whichever came first: its write making no progress (dropped), or
    // its silence to pings (1011). Under load either can; both give its 24 MiB back, which the
    // next 20 MiB echo needs.
    assert!(
        ended.contains("dropped") || ended.contains("closed by server, code 1011"),
        "{ended}"
    );
    let mut third = connect_to(server.ws, "/echo").expect("upgrade");
    echoes(&mut third, Message::binary(vec![3u8; 20 * MIB]));
    drop(never_reads);
}
