//! The binary's log: one line per record on stderr, `[2026-12-06T03:21:35Z INFO  target] text`,
//! at the level `RUST_LOG` asks for (`info` by default).
//!
//! `RUST_LOG` is read as env_logger reads it, for the forms an operator uses: a level (`debug`),
//! and directives `TARGET=LEVEL` (`wsecho::net=debug`) that apply to a target and those below
//! it, comma-separated, the most specific winning. A few lines of our own rather than a logging
//! crate: this binary must stay under 1 MiB, and env_logger with its time crate cost 20 KB.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Log to stderr as `RUST_LOG` says, each message passed through `rewrite` (the library names
/// `Config` fields; the operator reads the flags that set them).
pub fn init(rewrite: fn(&str) -> String) {
    let filter = Filter::parse(&std::env::var("RUST_LOG").unwrap_or_default());
    log::set_max_level(filter.most());
    // Once per process, for its whole life.
    let _ = log::set_logger(Box::leak(Box::new(Logger { filter, rewrite })));
}

struct Logger {
    filter: Filter,
    rewrite: fn(&str) -> String,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.filter.level_for(metadata.target())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = (self.rewrite)(&record.args().to_string());
        let line = format!(
            "[{} {:<5} {}] {text}\n",
            timestamp(SystemTime::now()),
            record.level(),
            record.target()
        );
        // One write per line, so that threads' lines never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// What `RUST_LOG` allows: a default level and levels for targets.
#[derive(Debug, PartialEq)]
struct Filter {
    default: LevelFilter,
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// `info` when `text` is empty; parts that are not a level or `TARGET=LEVEL` are skipped.
    fn parse(text: &str) -> Filter {
        let mut filter = Filter {
            default: LevelFilter::Info,
            targets: Vec::new(),
        };
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            match part.split_once('=') {
                Some((target, level)) => {
                    if let Ok(level) = level.trim().parse() {
                        filter.targets.push((target.trim().to_string(), level));
                    }
                }
                None => match part.parse() {
                    Ok(level) => filter.default = level,
                    // A bare target turns everything on for it, as env_logger does.
                    Err(_) => filter.targets.push((part.to_string(), LevelFilter::Trace)),
                },
            }
        }
        // The most specific (longest) target first.
        filter
            .targets
            .sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
        filter
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(name, _)| {
                target
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .map_or(self.default, |(_, level)| *level)
    }

    /// The most verbose level any record may have.
    fn most(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, level)| *level)
            .fold(self.default, Ord::max)
    }
}

/// `time` in UTC as RFC 3339, to the second (`2026-12-06T03:21:35Z`).
fn timestamp(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The date `days` after 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's
/// days-to-civil algorithm: eras of 400 years that start on March 1st).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// Whether a record at `level` for `target` would be logged under `RUST_LOG=text`.
#[cfg(test)]
fn logs(text: &str, target: &str, level: log::Level) -> bool {
    level <= Filter::parse(text).level_for(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;
    use std::time::Duration;

    #[test]
    fn rust_log_is_read_as_env_logger_reads_it() {
        assert!(logs("", "wsecho::server", Level::Info));
        assert!(!logs("", "wsecho::server", Level::Debug));
        assert!(logs("debug", "wsecho", Level::Debug));
        assert!(!logs("warn", "wsecho::server", Level::Info));
        let directives = "warn,wsecho::net=debug,wsecho::net::tls=error";
        assert!(logs(directives, "wsecho::net::accept", Level::Debug));
        assert!(!logs(directives, "wsecho::net::tls", Level::Warn));
        assert!(!logs(directives, "wsecho::server", Level::Info));
        assert!(
            !logs(directives, "wsecho::network", Level::Debug),
            "a name, not a prefix"
        );
        assert!(logs("wsecho", "wsecho::apps", Level::Trace));
        assert_eq!(Filter::parse(directives).most(), LevelFilter::Debug);
        assert_eq!(Filter::parse("off").most(), LevelFilter::Off);
    }

    #[test]
    fn timestamps_are_rfc_3339_in_utc() {
        let at = |seconds| timestamp(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_527_295), "2026-12-06T03:21:35Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
