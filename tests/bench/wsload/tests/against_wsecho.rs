//! The bench's load client (`wsload`) against wsecho, each mode for about a second, so that
//! `make bench` cannot rot unnoticed. Figures are not judged here (the machine is shared and
//! noisy): only that each mode runs and reports what it should. wsecho runs in this test's
//! own process (its pid is the server's, for the CPU, memory and thread figures).

mod common;

use common::wsload;

#[test]
fn every_mode_runs_against_wsecho_and_reports_its_figures() {
    let server = wsecho::Server::start(wsecho::Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ws: "127.0.0.1:0".parse().unwrap(),
        policy_port: None,
        // Every client comes from 127.0.0.1.
        max_per_address: usize::MAX,
        ..wsecho::Config::default()
    })
    .expect("wsecho starts");
    let ws = server.ws_addr();
    let url = format!("ws://{ws}/echo");

    // First, while the server is quiet: each held connection is one server thread.
    let idle = wsload("idle", &url, &["--connections", "100"]);
    assert!((0.9..=1.1).contains(&idle["threads_per_conn"]), "{idle:?}");
    assert!(idle["rss_per_conn_kib"] > 0.0, "{idle:?}");

    let rtt = wsload("rtt", &url, &[]);
    assert!(rtt["messages"] > 100.0 && rtt["p50_us"] > 0.0 && rtt["p99_us"] >= rtt["p50_us"]);
    assert!(rtt.contains_key("client_cpu") && rtt.contains_key("server_cpu"));

    let conc = wsload("conc", &url, &["--connections", "20"]);
    assert_eq!(conc["connections"], 20.0);
    assert!(conc["msgs_per_s"] > 100.0 && conc["p99_us"] >= conc["p50_us"]);

    let paced = wsload("paced", &url, &["--connections", "20"]);
    assert!(
        paced["sent"] >= 150.0,
        "20 connections x 10/s for 1 s: {paced:?}"
    );
    assert!(paced["answered"] > 0.0 && paced["max_us"] >= paced["p99_us"]);

    let stream = wsload("stream", &url, &[]);
    assert!(stream["messages"] > 16.0 && stream["mb_per_s"] > 0.0);

    // Compressed 64 KiB messages: wsecho agrees to permessage-deflate and echoes them.
    let deflate = wsload("deflate", &url, &[]);
    assert!(
        deflate["messages"] > 16.0 && deflate["mb_per_s"] > 0.0,
        "{deflate:?}"
    );
    assert!(
        deflate["compressed_bytes"] < 16_000.0,
        "about 10 to 1: {deflate:?}"
    );
    assert!(deflate["server_cpu_ms_per_mb"] > 0.0, "{deflate:?}");

    let handshake = wsload("handshake", &url, &[]);
    assert!(handshake["handshakes"] > 10.0 && handshake["per_s"] > 0.0);

    // The chat room: every say reaches every one of the 20 members.
    let chat = format!("ws://{ws}/chat");
    let fanout = wsload("fanout", &chat, &["--connections", "20"]);
    assert!(
        fanout["said"] >= 50.0,
        "10 talkers x 10/s for 1 s: {fanout:?}"
    );
    assert_eq!(fanout["expected"], fanout["said"] * 20.0, "{fanout:?}");
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout:?}");
    assert!(fanout["max_us"] >= fanout["p99_us"] && fanout["p99_us"] >= fanout["p50_us"]);
    server.shutdown();
}
