//! The message rate limit of one connection (`Config::max_messages_per_second`): a token
//! bucket holding one second's worth of messages, so a client may send a burst of N at once
//! and N a second after that. The clock is read only when the bucket runs dry, so a client
//! within its rate costs a decrement per message.

use std::time::{Duration, Instant};

/// One connection's bucket.
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    tokens: u32,
    /// Tokens are earned from this instant on.
    since: Instant,
}

impl RateLimit {
    /// A full bucket of `per_second` messages (at least 1), starting at `now`.
    pub fn new(per_second: u32, now: Instant) -> RateLimit {
        let per_second = per_second.max(1);
        RateLimit {
            per_second,
            tokens: per_second,
            since: now,
        }
    }

    /// The rate, messages per second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Whether one more message may come now; it is counted if so.
    pub fn allow(&mut self) -> bool {
        if self.tokens == 0 {
            self.refill(Instant::now());
        }
        self.take()
    }

    fn take(&mut self) -> bool {
        match self.tokens.checked_sub(1) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }

    /// Add what was earned since `since`, at most a full bucket; the fraction of a token not
    /// yet earned carries over.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        let earned = elapsed.as_nanos() * u128::from(self.per_second) / 1_000_000_000;
        if earned >= u128::from(self.per_second) {
            self.tokens = self.per_second;
            self.since = now;
        } else if earned > 0 {
            // `earned` < per_second, so it fits.
            let earned = earned as u32;
            self.tokens = earned;
            let spent = Duration::from_nanos(u64::from(earned) * 1_000_000_000) / self.per_second;
            self.since += spent;
        }
    }

    #[cfg(test)]
    fn allow_at(&mut self, now: Instant) -> bool {
        if self.tokens == 0 {
            self.refill(now);
        }
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_of_one_seconds_worth_passes_and_the_next_message_does_not() {
        let start = Instant::now();
        let mut limit = RateLimit::new(100, start);
        assert!((0..100).all(|_| limit.allow_at(start)));
        assert!(!limit.allow_at(start));
        assert!(!limit.allow_at(start + ms(9)));
    }

    #[test]
    fn tokens_come_back_at_the_rate_with_fractions_kept() {
        let start = Instant::now();
        let mut limit = RateLimit::new(100, start);
        assert!((0..100).all(|_| limit.allow_at(start)));
        // One token every 10 ms: asking every 4 ms gets one in about every third try.
        let allowed = (1..=250)
            .filter(|&n| limit.allow_at(start + ms(4 * n)))
            .count();
        assert_eq!(allowed, 100, "1 s of 4 ms steps earns 100 tokens");
    }

    #[test]
    fn a_quiet_client_gets_a_full_bucket_back_and_no_more() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, start);
        assert!((0..10).all(|_| limit.allow_at(start)));
        let later = start + Duration::from_secs(60);
        assert!((0..10).all(|_| limit.allow_at(later)));
        assert!(!limit.allow_at(later));
    }

    #[test]
    fn a_rate_of_zero_still_lets_one_message_a_second_through() {
        let start = Instant::now();
        let mut limit = RateLimit::new(0, start);
        assert_eq!(limit.per_second(), 1);
        assert!(limit.allow_at(start));
        assert!(!limit.allow_at(start + ms(500)));
        assert!(limit.allow_at(start + ms(1000)));
    }
}
