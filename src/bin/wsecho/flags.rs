//! The command line's flags, each defined once in `FLAGS`: its name, value, the `Config` field
//! it sets, its help, its default (read from `Config::default()`) and how it sets the field.
//! `--help` and the flag table in docs/operating.md are made from it (a test keeps the doc in
//! step), and the library's messages, which name `Config` fields, are shown with the flags.

use crate::words;
use std::borrow::Cow;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;
use wsecho::{Config, Program, TlsFiles};

/// One flag.
pub struct Flag {
    /// Without its leading `--`.
    pub name: &'static str,
    /// What its value is (`BYTES`, `ADDR`); empty for a switch.
    pub value: &'static str,
    /// The `Config` field it sets, as the library's messages name it.
    pub field: &'static str,
    /// What it does, one sentence per line as `--help` shows it.
    pub help: &'static str,
    /// What happens past it, for the operator's table: a close code or an HTTP status.
    #[cfg_attr(not(test), allow(dead_code))]
    pub answer: &'static str,
    /// Its default, as the server runs without it.
    pub default: fn(&Config) -> String,
    /// Set it from its value (empty for a switch).
    pub set: fn(&mut Parsed, &str) -> Result<(), String>,
}

/// A command line read so far: the config, and the TLS files until both are given.
#[derive(Default)]
pub struct Parsed {
    pub config: Config,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

pub const FLAGS: &[Flag] = &[
    Flag {
        name: "http",
        value: "ADDR",
        field: "http",
        help: "page (HTTP) address, HOST:PORT or unix:PATH, also /metrics\nand /healthz; `off` runs no page port",
        answer: "",
        default: |c| {
            c.http
                .as_ref()
                .map_or_else(|| "off".to_string(), |addr| addr.to_string())
        },
        set: |p, v| {
            p.config.http = match v {
                "off" => None,
                v => Some(v.parse()?),
            };
            Ok(())
        },
    },
    Flag {
        name: "ws",
        value: "ADDR",
        field: "ws",
        help: "WebSocket address, HOST:PORT or unix:PATH, /echo /chat",
        answer: "",
        default: |c| c.ws.to_string(),
        set: |p, v| {
            p.config.ws = v.parse()?;
            Ok(())
        },
    },
    Flag {
        name: "policy-port",
        value: "PORT",
        field: "policy_port",
        help: "Flash policy port on the --ws address; 0 turns it off",
        answer: "",
        default: |c| c.policy_port.unwrap_or(0).to_string(),
        set: |p, v| {
            let port: u16 = parse(v)?;
            p.config.policy_port = (port != 0).then_some(port);
            Ok(())
        },
    },
    Flag {
        name: "policy-domain",
        value: "DOMAIN",
        field: "policy_domain",
        help: "domain the Flash policy grants",
        answer: "",
        default: |c| c.policy_domain.clone(),
        set: |p, v| {
            p.config.policy_domain = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "www",
        value: "DIR",
        field: "www",
        help: "serve the page from DIR",
        answer: "",
        default: |_| "built in".to_string(),
        set: |p, v| {
            p.config.www = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "max-message-size",
        value: "BYTES",
        field: "max_message_size",
        help: "larger messages get close 1009",
        answer: "close 1009",
        default: |c| c.max_message_size.to_string(),
        set: |p, v| {
            p.config.max_message_size = parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-queue",
        value: "BYTES",
        field: "max_queue",
        help: "bytes waiting for one slow client (pushes, broadcasts);\nmore close it with 1008",
        answer: "close 1008",
        default: |c| c.max_queue.to_string(),
        set: |p, v| {
            p.config.max_queue = parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-messages-per-second",
        value: "N",
        field: "max_messages_per_second",
        help: "messages one connection may send a second, any route (a burst\nof N at once); more close it with 1008; 0 for no limit",
        answer: "close 1008",
        default: |c| {
            c.max_messages_per_second
                .map_or_else(|| "no limit".to_string(), |n| n.to_string())
        },
        set: |p, v| {
            let per_second: u32 = parse(v)?;
            p.config.max_messages_per_second = (per_second != 0).then_some(per_second);
            Ok(())
        },
    },
    Flag {
        name: "memory-budget",
        value: "BYTES",
        field: "memory_budget",
        help: "message bytes in flight, all connections together; a\nmessage past it gets close 1013",
        answer: "close 1013",
        default: |c| c.memory_budget.to_string(),
        set: |p, v| {
            p.config.memory_budget = parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-connections",
        value: "N",
        field: "max_connections",
        help: "open WebSockets; more get 503",
        answer: "503",
        default: |c| c.max_connections.to_string(),
        set: |p, v| {
            p.config.max_connections = parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-page-connections",
        value: "N",
        field: "max_page_connections",
        help: "open page connections; more close the longest idle one,\nor get 503 when none is idle",
        answer: "503",
        default: |c| c.max_page_connections.to_string(),
        set: |p, v| {
            p.config.max_page_connections = parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-per-address",
        value: "N",
        field: "max_per_address",
        help: "connections one client address may hold on each port,\nopenings included; more get 503",
        answer: "503",
        default: |c| c.max_per_address.to_string(),
        set: |p, v| {
            p.config.max_per_address = parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "ipv6-prefix",
        value: "BITS",
        field: "ipv6_prefix",
        help: "IPv6 clients count for --max-per-address by this many leading\nbits (one client owns a /64); 128 counts each address apart",
        answer: "",
        default: |c| c.ipv6_prefix.to_string(),
        set: |p, v| {
            p.config.ipv6_prefix = parse(v)?;
            Ok(())
        },
    },
    Flag {
        name: "handshake-timeout",
        value: "SECS",
        field: "handshake_timeout",
        help: "time to send a whole request head; also how long a page\nconnection may idle between requests",
        answer: "408",
        default: |c| crate::seconds_text(c.handshake_timeout),
        set: |p, v| {
            p.config.handshake_timeout = seconds(v)?;
            Ok(())
        },
    },
    Flag {
        name: "ping-interval",
        value: "SECS",
        field: "ping_interval",
        help: "Ping after this much silence; twice this closes (1011)",
        answer: "close 1011",
        default: |c| crate::seconds_text(c.ping_interval),
        set: |p, v| {
            p.config.ping_interval = seconds(v)?;
            Ok(())
        },
    },
    Flag {
        name: "resume-window",
        value: "SECS",
        field: "resume_window",
        help: "a session whose carrier dropped (the page over HTTP, when a proxy\nbreaks WebSocket) is kept this long for its client to come back",
        answer: "",
        default: |c| crate::seconds_text(c.resume_window),
        set: |p, v| {
            p.config.resume_window = seconds(v)?;
            Ok(())
        },
    },
    Flag {
        name: "allow-origin",
        value: "ORIGIN",
        field: "allowed_origins",
        help: "also accept pages from ORIGIN (repeatable; * for any)",
        answer: "403",
        default: |_| "same host only".to_string(),
        set: |p, v| {
            p.config.allowed_origins.push(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "host",
        value: "NAME",
        field: "allowed_hosts",
        help: "answer only requests for host NAME, others get 421\n(repeatable; against DNS rebinding)",
        answer: "421",
        default: |_| "any".to_string(),
        set: |p, v| {
            p.config.allowed_hosts.push(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "trusted-proxy",
        value: "ADDR",
        field: "trusted_proxies",
        help: "a reverse proxy at ADDR names the client in X-Forwarded-For:\nits address counts for --max-per-address and the logs\n(repeatable)",
        answer: "",
        default: |_| "none".to_string(),
        set: |p, v| {
            p.config.trusted_proxies.push(parse(v)?);
            Ok(())
        },
    },
    Flag {
        name: "no-deflate",
        value: "",
        field: "deflate",
        help: "decline permessage-deflate: clients send uncompressed",
        answer: "",
        default: |_| "accepted".to_string(),
        set: |p, _| {
            p.config.deflate = false;
            Ok(())
        },
    },
    Flag {
        name: "tls-cert",
        value: "FILE",
        field: "tls.cert",
        help: "serve https:// and wss:// (both ports) with this PEM\ncertificate chain; needs --tls-key, and a build with\n`--features tls`",
        answer: "",
        default: |_| "plain".to_string(),
        set: |p, v| {
            p.tls_cert = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "tls-key",
        value: "FILE",
        field: "tls.key",
        help: "the certificate's private key (PEM)",
        answer: "",
        default: |_| "none".to_string(),
        set: |p, v| {
            p.tls_key = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "redis",
        value: "URL",
        field: "redis",
        help: "share the chat room (and every named room) with every\ninstance using this Redis: redis://[:PASSWORD@]HOST:PORT[/DB]\nor unix:///PATH; needs a build with `--features redis`",
        answer: "",
        default: |_| "this instance only".to_string(),
        set: |p, v| {
            p.config.redis = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "run",
        value: "PATH=COMMAND",
        field: "programs",
        help: "run COMMAND for each connection to PATH: each text message\nis a line on its stdin, each line it prints a message\n(split into words like a shell, never run by one; repeatable)",
        answer: "",
        default: |_| "none".to_string(),
        set: |p, v| run(p, v, false),
    },
    Flag {
        name: "run-binary",
        value: "PATH=COMMAND",
        field: "programs",
        help: "as --run, but bytes both ways: each message to stdin as it\nis, each read of stdout one binary message (repeatable)",
        answer: "",
        default: |_| "none".to_string(),
        set: |p, v| run(p, v, true),
    },
    Flag {
        name: "run-grace",
        value: "SECS",
        field: "program_grace",
        help: "a program whose client has gone has this long to exit after\nits stdin closes, and again after SIGTERM, before SIGKILL",
        answer: "",
        default: |c| crate::seconds_text(c.program_grace),
        set: |p, v| {
            p.config.program_grace = seconds(v)?;
            Ok(())
        },
    },
    Flag {
        name: "passenv",
        value: "NAME",
        field: "passenv",
        help: "pass this variable of wsecho's environment to programs\n(repeatable; PATH always is)",
        answer: "",
        default: |_| "PATH only".to_string(),
        set: |p, v| {
            p.config.passenv.push(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "publish-token-file",
        value: "FILE",
        field: "publish_token",
        help: "let a backend holding the token in FILE publish to room NAME\nwith POST /publish/NAME (Authorization: Bearer TOKEN) on the\npage port; clients hear it on ws://.../rooms/NAME",
        answer: "401",
        default: |_| "off".to_string(),
        set: |p, v| {
            let token = std::fs::read_to_string(v)
                .map_err(|error| format!("cannot read the token file {v}: {error}"))?;
            p.config.publish_token = Some(token.trim().to_string());
            Ok(())
        },
    },
    Flag {
        name: "jwt-key-file",
        value: "FILE",
        field: "jwt_key",
        help: "require a token signed with the key in FILE (JWT, HS256) on every\nWebSocket and session: Authorization: Bearer, ?token= or the\nwsecho_token cookie; its sub is the client's name",
        answer: "401",
        default: |_| "off".to_string(),
        set: |p, v| {
            let key = std::fs::read(v)
                .map_err(|error| format!("cannot read the key file {v}: {error}"))?;
            p.config.jwt_key = Some(key.trim_ascii().to_vec());
            Ok(())
        },
    },
];

/// `--run PATH=COMMAND`: one more program route.
fn run(parsed: &mut Parsed, value: &str, binary: bool) -> Result<(), String> {
    let Some((path, command)) = value.split_once('=') else {
        return Err(format!(
            "give PATH=COMMAND, e.g. '/count=python3 count.py', not {value:?}"
        ));
    };
    parsed.config.programs.push(Program {
        path: path.to_string(),
        command: words::split(command)?,
        binary,
    });
    Ok(())
}

/// Column where a flag's help starts in `--help`.
const HELP_COLUMN: usize = 28;

impl Flag {
    /// `--name VALUE`, as the help and the docs show it.
    pub fn usage(&self) -> String {
        match self.value {
            "" => format!("--{}", self.name),
            value => format!("--{} {value}", self.name),
        }
    }
}

/// The options part of `--help`, one entry per flag with its default.
pub fn options_help() -> String {
    let defaults = Config::default();
    let mut out = String::new();
    for flag in FLAGS {
        let mut lines: Vec<String> = flag.help.lines().map(str::to_string).collect();
        let default = format!("[default: {}]", (flag.default)(&defaults));
        match lines.last_mut() {
            // On its own line where it would make the last one too long for 88 columns.
            Some(last) if HELP_COLUMN + last.len() + 1 + default.len() <= 88 => {
                last.push(' ');
                last.push_str(&default);
            }
            _ => lines.push(format!("{default:>width$}", width = 88 - HELP_COLUMN)),
        }
        for (i, line) in lines.iter().enumerate() {
            let left = if i == 0 {
                format!("  {}", flag.usage())
            } else {
                String::new()
            };
            let _ = writeln!(out, "{left:<width$}{line}", width = HELP_COLUMN);
        }
    }
    out
}

/// The operator's flag table (docs/operating.md), in Markdown.
#[cfg(test)]
pub fn markdown_table() -> String {
    let defaults = Config::default();
    let mut out = String::from("| flag | default | effect | past it |\n|---|---|---|---|\n");
    for flag in FLAGS {
        let effect = flag.help.replace('\n', " ");
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            flag.usage(),
            (flag.default)(&defaults),
            effect.replace('|', "\\|"),
            flag.answer
        );
    }
    out
}

/// Read the command line's flags into a `Config`, checked (`Config::validate`); `Ok(None)`
/// when it only asked for help or the version.
pub fn parse_args(mut parser: lexopt::Parser) -> Result<Option<Config>, String> {
    use lexopt::prelude::*;
    let mut parsed = Parsed::default();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long(name) => {
                let Some(flag) = FLAGS.iter().find(|flag| flag.name == name) else {
                    if name == "help" {
                        print!("{}", crate::help());
                        return Ok(None);
                    }
                    if name == "version" {
                        println!("wsecho {}", env!("CARGO_PKG_VERSION"));
                        return Ok(None);
                    }
                    return Err(arg.unexpected().to_string());
                };
                let text = match flag.value {
                    "" => String::new(),
                    _ => {
                        let raw = parser.value().map_err(|e| e.to_string())?;
                        raw.to_string_lossy().into_owned()
                    }
                };
                (flag.set)(&mut parsed, &text).map_err(|error| {
                    format!("invalid value '{text}' for {}: {error}", flag.usage())
                })?;
            }
            Short('h') => {
                print!("{}", crate::help());
                return Ok(None);
            }
            Short('V') => {
                println!("wsecho {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let mut config = parsed.config;
    config.tls = match (parsed.tls_cert, parsed.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => return Err("--tls-cert needs --tls-key, the certificate's key".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert, its certificate".into()),
    };
    config
        .validate()
        .map_err(|error| with_flags(&error.to_string()).into_owned())?;
    Ok(Some(config))
}

/// A library message with each `Config` field it names (in backticks) shown as its flag.
/// Every log line passes here: one that names no field (nearly all) is taken as it is.
pub fn with_flags(message: &str) -> Cow<'_, str> {
    if !message.contains('`') {
        return Cow::Borrowed(message);
    }
    let mut out = message.to_string();
    for flag in FLAGS {
        let field = format!("`{}`", flag.field);
        if out.contains(&field) {
            out = out.replace(&field, &format!("--{}", flag.name));
        }
    }
    Cow::Owned(out)
}

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|error: T::Err| error.to_string())
}

/// Seconds, fractions allowed down to nanoseconds (`30`, `0.5`, `.25`); their range is the
/// caller's to check. Read without floating point: parsing an `f64` would bring about 15 KB
/// of tables and code into a binary that must stay under 1 MiB.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text} is not a number of seconds");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    let too_fine = fraction.len() > 9;
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) || too_fine
    {
        return Err(bad());
    }
    let secs: u64 = match whole {
        "" => 0,
        whole => whole.parse().map_err(|_| bad())?,
    };
    let mut nanos = 0u32;
    let mut scale = 100_000_000u32;
    for digit in fraction.bytes() {
        nanos += u32::from(digit - b'0') * scale;
        scale /= 10;
    }
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests;
