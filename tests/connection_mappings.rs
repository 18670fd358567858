//! What one open connection costs the process in memory mappings, the resource that runs out
//! first on a default Linux host (`vm.max_map_count` 65530): its thread's stack and guard page,
//! two in all. Alone in its file: the mappings counted are the server's.
mod common;

use common::*;
use std::io::Write;
use tungstenite::Message;

#[test]
fn an_open_connection_costs_two_memory_mappings() {
    let server = start(config());
    // The process's first connections may set up what every later one shares.
    let mut warm_up = connect(&server);
    warm_up.send(Message::text("warm")).unwrap();
    assert_eq!(next_message(&mut warm_up), Message::text("warm"));

    let before = mappings_in_process();
    let count = 300;
    // Raw sockets: a tungstenite client's 128 KiB read buffer would be a mapping of its own.
    let mut clients: Vec<_> = (0..count).map(|_| raw_upgraded(server.ws_addr())).collect();
    for client in &mut clients {
        client.write_all(&client_frame(0x1, b"hello")).unwrap();
        let (fin, opcode, payload) = read_server_frame(client).unwrap();
        assert_eq!(
            (fin, opcode, payload.as_slice()),
            (true, 0x1, &b"hello"[..])
        );
    }
    let added = mappings_in_process().saturating_sub(before);
    // Besides the threads, malloc may open an arena of its own for some of them (at most
    // 8 per core, a couple of mappings each).
    let arenas = 8 * std::thread::available_parallelism().map_or(2, usize::from) * 3;
    assert!(
        added <= 2 * count + arenas,
        "{count} connections added {added} mappings ({:.1} each)",
        added as f64 / count as f64
    );
    drop(clients);
    server.shutdown();
}
