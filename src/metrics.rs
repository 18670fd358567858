//! What the server counts, for `GET /metrics` on the page port (the Prometheus text format):
//! open connections and totals by route, refusals by reason, messages and bytes each way,
//! closes by code, page requests, the memory budget, and the build.
//!
//! Counters are plain atomics, touched once per connection, refusal or close; a connection's
//! messages and bytes are added when it has been quiet for a keepalive interval and when it
//! ends, never per message (see `Connection::report_traffic`).

use crate::budget::Budget;
use crate::connection::Traffic;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The server's counts, shared by every thread.
pub struct Metrics {
    /// By route path: open now, and opened in all.
    routes: BTreeMap<String, (AtomicI64, AtomicU64)>,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// By close code and by who closed.
    closes: Mutex<BTreeMap<(u16, &'static str), u64>>,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    page_requests: AtomicU64,
    budget: Arc<Budget>,
}

impl Metrics {
    pub fn new(routes: impl IntoIterator<Item = String>, budget: Arc<Budget>) -> Arc<Metrics> {
        Arc::new(Metrics {
            routes: routes
                .into_iter()
                .map(|path| (path, (AtomicI64::new(0), AtomicU64::new(0))))
                .collect(),
            refusals: Mutex::default(),
            closes: Mutex::default(),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            page_requests: AtomicU64::new(0),
            budget,
        })
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// A WebSocket opened on `route`.
    pub fn opened(&self, route: &str) {
        if let Some((open, total)) = self.routes.get(route) {
            open.fetch_add(1, Ordering::Relaxed);
            total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A WebSocket on `route` ended with `code`, closed `by` "client" or "server" (or
    /// "nobody": dropped, 1006).
    pub fn closed(&self, route: &str, code: u16, by: &'static str) {
        if let Some((open, _)) = self.routes.get(route) {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        *lock(&self.closes).entry((code, by)).or_default() += 1;
    }

    /// A connection was turned away (or a message refused) for `reason`.
    pub fn refused(&self, reason: &'static str) {
        *lock(&self.refusals).entry(reason).or_default() += 1;
    }

    /// Messages and bytes a connection has moved since it last reported.
    pub fn add_traffic(&self, traffic: Traffic) {
        self.messages_in
            .fetch_add(traffic.messages_in, Ordering::Relaxed);
        self.bytes_in.fetch_add(traffic.bytes_in, Ordering::Relaxed);
        self.messages_out
            .fetch_add(traffic.messages_out, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(traffic.bytes_out, Ordering::Relaxed);
    }

    pub fn page_request(&self) {
        self.page_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        family(
            &mut out,
            "wsecho_build_info",
            "gauge",
            "Always 1; the version is a label.",
            [(version, 1)],
        );
        let by_route = |pick: fn(&(AtomicI64, AtomicU64)) -> i64| {
            self.routes
                .iter()
                .map(move |(route, counts)| (format!("{{route=\"{route}\"}}"), pick(counts)))
        };
        family(
            &mut out,
            "wsecho_open_connections",
            "gauge",
            "WebSockets open now, by route.",
            by_route(|(open, _)| open.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "wsecho_connections_total",
            "counter",
            "WebSockets opened, by route.",
            by_route(|(_, total)| total.load(Ordering::Relaxed) as i64),
        );
        let refusals: Vec<_> = lock(&self.refusals)
            .iter()
            .map(|(reason, &count)| (format!("{{reason=\"{reason}\"}}"), count as i64))
            .collect();
        family(
            &mut out,
            "wsecho_refusals_total",
            "counter",
            "Connections turned away, and messages refused for memory, by reason.",
            refusals,
        );
        let closes: Vec<_> = lock(&self.closes)
            .iter()
            .map(|((code, by), &count)| (format!("{{code=\"{code}\",by=\"{by}\"}}"), count as i64))
            .collect();
        family(
            &mut out,
            "wsecho_closes_total",
            "counter",
            "WebSockets ended, by close code and by who closed (1006: nobody, it dropped).",
            closes,
        );
        for (name, help, value) in [
            (
                "wsecho_messages_received_total",
                "Text and binary messages received.",
                &self.messages_in,
            ),
            (
                "wsecho_received_bytes_total",
                "Their payload bytes.",
                &self.bytes_in,
            ),
            (
                "wsecho_messages_sent_total",
                "Text and binary messages sent.",
                &self.messages_out,
            ),
            (
                "wsecho_sent_bytes_total",
                "Their payload bytes.",
                &self.bytes_out,
            ),
            (
                "wsecho_page_requests_total",
                "Requests answered on the page port.",
                &self.page_requests,
            ),
        ] {
            let value = value.load(Ordering::Relaxed) as i64;
            family(&mut out, name, "counter", help, [(String::new(), value)]);
        }
        let in_use = self.budget.in_use() as i64;
        let help = "Bytes of messages in flight held against --memory-budget.";
        family(
            &mut out,
            "wsecho_memory_budget_in_use_bytes",
            "gauge",
            help,
            [(String::new(), in_use)],
        );
        let limit = self.budget.limit() as i64;
        family(
            &mut out,
            "wsecho_memory_budget_bytes",
            "gauge",
            "--memory-budget.",
            [(String::new(), limit)],
        );
        out
    }
}

/// One metric family: its HELP and TYPE lines, then a sample per label set.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, i64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
