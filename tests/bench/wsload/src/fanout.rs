//! The fanout mode: one chat room (wsecho's `/chat` protocol), everyone joins, ten talk at
//! `--rate` messages/s each (open loop), everyone hears; deliveries/s and the latency from a say
//! leaving the client to each member hearing it.

use super::{Inbox, Options, frame, open_many, percentiles};
use crate::epoll::EMPTY_EVENT;
use std::io::{self, Write};
use std::time::{Duration, Instant};

const FANOUT_TALKERS: usize = 10;

/// One chat room: everyone joins, ten talk (`--rate` messages/s each, open loop), everyone
/// hears.
pub fn fanout(options: &Options, duration: Duration) -> io::Result<String> {
    let (epoll, mut streams) = open_many(options, options.connections)?;
    let n = streams.len();
    let mut inboxes: Vec<Inbox> = streams.iter().map(|_| Inbox::default()).collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let join = format!(r#"{{"type":"join","name":"load{i}"}}"#);
        stream.write_all(&frame(0x1, join.as_bytes()))?;
    }
    let mut welcomed = vec![false; n];
    let mut waiting = n;
    let mut events = vec![EMPTY_EVENT; 1024];
    let joined_by = Instant::now() + Duration::from_secs(60);
    while waiting > 0 {
        if Instant::now() > joined_by {
            return Err(io::Error::other(format!(
                "only {} of {n} were welcomed",
                n - waiting
            )));
        }
        for token in epoll.wait(&mut events, 50)? {
            let i = token as usize;
            let mut welcome = false;
            inboxes[i].pull_payloads(&mut streams[i], |payload| {
                welcome |= contains(payload, br#""welcome""#);
            })?;
            if welcome && !welcomed[i] {
                welcomed[i] = true;
                waiting -= 1;
            }
        }
    }
    let talkers = FANOUT_TALKERS.min(n);
    let slot = Duration::from_secs(1) / (talkers as u32 * options.rate);
    let base = Instant::now();
    let end = base + duration;
    let drained_by = end + Duration::from_secs(2);
    let (mut next_slot, mut said) = (0u64, 0u64);
    let (mut in_window, mut delivered) = (0u64, 0u64);
    let mut samples = Vec::new();
    loop {
        let now = Instant::now();
        if now >= drained_by || (now >= end && delivered == said * n as u64) {
            break;
        }
        while now < end && base + slot * next_slot as u32 <= now {
            let i = (next_slot % talkers as u64) as usize;
            let stamp = Instant::now().duration_since(base).as_nanos();
            let say = format!(r#"{{"type":"say","text":"{stamp}"}}"#);
            streams[i].write_all(&frame(0x1, say.as_bytes()))?;
            next_slot += 1;
            said += 1;
        }
        let until_next = (base + slot * next_slot as u32).saturating_duration_since(Instant::now());
        let timeout_ms = until_next.as_millis().clamp(1, 50) as i32;
        for token in epoll.wait(&mut events, timeout_ms)? {
            let i = token as usize;
            let heard_at = Instant::now().duration_since(base).as_nanos();
            inboxes[i].pull_payloads(&mut streams[i], |payload| {
                if let Some(stamp) = said_stamp(payload) {
                    delivered += 1;
                    if heard_at <= end.duration_since(base).as_nanos() {
                        in_window += 1;
                    }
                    let nanos = heard_at.saturating_sub(stamp).min(u64::MAX as u128) as u64;
                    samples.push(Duration::from_nanos(nanos));
                }
            })?;
        }
    }
    Ok(format!(
        "connections={n} talkers={talkers} rate={} said={said} expected={} delivered={delivered} \
         deliveries_per_s={:.0} {}",
        options.rate,
        said * n as u64,
        in_window as f64 / duration.as_secs_f64(),
        percentiles(&mut samples)
    ))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The timestamp in a `said` message's text (any JSON spacing), if it is one.
fn said_stamp(payload: &[u8]) -> Option<u128> {
    if !contains(payload, br#""said""#) {
        return None;
    }
    let key = payload.windows(6).position(|w| w == br#""text""#)?;
    let rest = &payload[key + 6..];
    let digits: Vec<u8> = rest
        .iter()
        .skip_while(|b| matches!(b, b' ' | b':' | b'"'))
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}
