//! The `wsecho` command: flags to a `Config`, logging, signals, exit codes.
//! Exit 0 after a clean shutdown, 1 when the server cannot start, 2 for a bad command line.
//! `wsecho ping URL` measures round trips to any echo endpoint, with ping(8)'s exit codes.

mod ping;

use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wsecho::{Config, Server};

/// `wsecho --help`, its defaults read from `Config::default()`.
fn help() -> String {
    let defaults = Config::default();
    let policy_port = defaults.policy_port.unwrap_or(0);
    format!(
        "\
wsecho: a WebSocket echo server and chat room with a browser page and a Flash fallback.

Usage: wsecho [OPTIONS]
       wsecho ping [OPTIONS] URL     round trips to an echo endpoint, like ping(8)

Open the printed page URL, press Connect, type a message: it comes back.
The text `quit` makes the server close the connection (code 1000).
The chat room is the page's chat.html, or any client of ws://HOST:PORT/chat.

Options:
  --http ADDR               page (HTTP) address            [default: {http}]
  --ws ADDR                 WebSocket address, /echo /chat [default: {ws}]
  --policy-port PORT        Flash policy port on the --ws address; 0 turns it off
                                                           [default: {policy_port}]
  --policy-domain DOMAIN    domain the Flash policy grants [default: {policy_domain}]
  --www DIR                 serve the page from DIR        [default: built in]
  --max-message-size BYTES  larger messages get close 1009 [default: {max_message_size}]
  --max-queue BYTES         bytes waiting for one slow client (pushes, broadcasts);
                            more close it with 1008        [default: {max_queue}]
  --memory-budget BYTES     message bytes in flight, all connections together; a
                            message past it gets close 1013 [default: {memory_budget}]
  --max-connections N       open WebSockets; more get 503  [default: {max_connections}]
  --max-page-connections N  open page connections; more close the longest idle one,
                            or get 503 when none is idle   [default: {max_page_connections}]
  --max-per-address N       connections one client address may hold on each port,
                            openings included; more get 503 [default: {max_per_address}]
  --handshake-timeout SECS  time to send a whole request head; also how long a page
                            connection may idle between requests [default: {handshake}]
  --ping-interval SECS      Ping after this much silence; twice this closes (1011)
                                                           [default: {ping}]
  --allow-origin ORIGIN     also accept pages from ORIGIN (repeatable; * for any)
                                                           [default: same host only]
  --host NAME               answer only requests for host NAME, others get 421
                            (repeatable; against DNS rebinding) [default: any]
  --trusted-proxy ADDR      a reverse proxy at ADDR names the client in X-Forwarded-For:
                            its address counts for --max-per-address and the logs
                            (repeatable)                   [default: none]
  --no-deflate              decline permessage-deflate: clients send uncompressed
                                                           [default: accepted]
  --tls-cert FILE           serve https:// and wss:// (both ports) with this PEM
                            certificate chain; needs --tls-key, and a build with
                            `--features tls`               [default: plain]
  --tls-key FILE            the certificate's private key (PEM)
  --redis URL               share the chat room with every instance using this Redis,
                            redis://HOST:PORT[/DB]; needs a build with
                            `--features redis`             [default: this instance only]
  -h, --help                print this help
  -V, --version             print the version

Logging: RUST_LOG=debug (or warn, ...) [default: info]. Stop with Ctrl-C or SIGTERM.
SIGHUP reloads the TLS certificate and key; open connections keep theirs.

Sizing a host: every connection (either port) takes a thread, a descriptor and two
memory mappings. At start, caps above what `ulimit -n`, vm.max_map_count and the
thread limits (kernel.threads-max, kernel.pid_max, the cgroup's pids.max) allow are
lowered to fit, with one warning naming the limit to raise. README, \"Sizing a host\".
",
        http = defaults.http,
        ws = defaults.ws,
        policy_domain = defaults.policy_domain,
        max_message_size = defaults.max_message_size,
        max_queue = defaults.max_queue,
        memory_budget = defaults.memory_budget,
        max_connections = defaults.max_connections,
        max_page_connections = defaults.max_page_connections,
        max_per_address = defaults.max_per_address,
        handshake = defaults.handshake_timeout.as_secs_f64(),
        ping = defaults.ping_interval.as_secs_f64(),
    )
}

const PING_HELP: &str = "\
wsecho ping: round-trip times to a WebSocket echo endpoint, like ping(8).

Usage: wsecho ping [OPTIONS] URL        (URL like ws://127.0.0.1:8087/echo)

Sends one text message per interval and prints each echo's round-trip time; after --count
messages, or on Ctrl-C, prints sent, received, loss and min/avg/max/mdev.

Options:
  --interval SECS   time between messages          [default: 1]
  --size BYTES      payload of each text message   [default: 32]
  --count N         stop after N messages          [default: until Ctrl-C]
  --timeout SECS    wait for connecting and for each echo [default: 5]
  -h, --help        print this help

Exit status: 0 when every message came back, 1 when some did not (or were not echoes),
2 when it could not ping at all (bad URL, unreachable host, refused upgrade).
";

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|first| first == "ping") {
        args.remove(0);
        return ping_command(args);
    }
    let config = match parse_args(lexopt::Parser::from_args(args)) {
        Ok(Some(config)) => config,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wsecho: {message}; see 'wsecho --help'");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    log_panics_as_one_line();
    wsecho::return_big_frees_to_the_system();
    if !wsecho::raise_open_file_limit() {
        log::warn!("could not raise the open-file limit; `ulimit -n` caps connections");
    }

    // Caught from before the server says where it listens: a signal sent as soon as it does
    // waits for its handler instead of killing the process (SIGHUP's default) mid-start.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (stops, hangups) = match (Signals::new([SIGINT, SIGTERM]), Signals::new([SIGHUP])) {
        (Ok(stops), Ok(hangups)) => (stops, hangups),
        (Err(error), _) | (_, Err(error)) => {
            log::error!("cannot install the SIGINT/SIGTERM/SIGHUP handlers: {error}");
            return ExitCode::from(1);
        }
    };
    let server = match Server::start(config) {
        Ok(server) => server,
        // A certificate, key or Redis URL that cannot be used is a mistake on the command line.
        Err(error @ (wsecho::StartError::Tls(_) | wsecho::StartError::Redis(_))) => {
            log::error!("{error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    if let Err(error) = stop_on_signals(stops, server.trigger()) {
        log::error!("cannot start the SIGINT/SIGTERM thread: {error}");
        return ExitCode::from(1);
    }
    if let Err(error) = reload_on_sighup(hangups, server.tls_reloader()) {
        log::error!("cannot start the SIGHUP thread: {error}");
        return ExitCode::from(1);
    }
    let summary = server.wait();
    log::info!("{summary}");
    ExitCode::SUCCESS
}

/// `Ok(None)` when the command only asked for help or the version.
fn parse_args(mut parser: lexopt::Parser) -> Result<Option<Config>, String> {
    use lexopt::prelude::*;
    let mut config = Config::default();
    let (mut tls_cert, mut tls_key) = (None, None);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("http") => config.http = value(&mut parser, "--http")?,
            Long("ws") => config.ws = value(&mut parser, "--ws")?,
            Long("policy-port") => {
                let port: u16 = value(&mut parser, "--policy-port")?;
                config.policy_port = (port != 0).then_some(port);
            }
            Long("policy-domain") => config.policy_domain = value(&mut parser, "--policy-domain")?,
            Long("www") => config.www = Some(value::<PathBuf>(&mut parser, "--www")?),
            Long("max-message-size") => {
                config.max_message_size = positive(
                    value(&mut parser, "--max-message-size")?,
                    "--max-message-size",
                )?
            }
            Long("max-connections") => {
                config.max_connections = positive(
                    value(&mut parser, "--max-connections")?,
                    "--max-connections",
                )?
            }
            Long("memory-budget") => {
                config.memory_budget =
                    positive(value(&mut parser, "--memory-budget")?, "--memory-budget")?
            }
            Long("max-queue") => {
                config.max_queue = positive(value(&mut parser, "--max-queue")?, "--max-queue")?
            }
            Long("max-per-address") => {
                config.max_per_address = positive(
                    value(&mut parser, "--max-per-address")?,
                    "--max-per-address",
                )?
            }
            Long("max-page-connections") => {
                config.max_page_connections = positive(
                    value(&mut parser, "--max-page-connections")?,
                    "--max-page-connections",
                )?
            }
            Long("handshake-timeout") => {
                config.handshake_timeout = seconds(&mut parser, "--handshake-timeout")?
            }
            Long("ping-interval") => {
                config.ping_interval = seconds(&mut parser, "--ping-interval")?
            }
            Long("host") => config.allowed_hosts.push(value(&mut parser, "--host")?),
            Long("trusted-proxy") => config
                .trusted_proxies
                .push(value(&mut parser, "--trusted-proxy")?),
            Long("allow-origin") => config
                .allowed_origins
                .push(value(&mut parser, "--allow-origin")?),
            Long("tls-cert") => tls_cert = Some(value::<PathBuf>(&mut parser, "--tls-cert")?),
            Long("tls-key") => tls_key = Some(value::<PathBuf>(&mut parser, "--tls-key")?),
            Long("redis") => config.redis = Some(value(&mut parser, "--redis")?),
            Long("no-deflate") => config.deflate = false,
            Short('h') | Long("help") => {
                print!("{}", help());
                return Ok(None);
            }
            Short('V') | Long("version") => {
                println!("wsecho {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if config.max_message_size > config.memory_budget {
        return Err(format!(
            "--max-message-size ({}) is larger than --memory-budget ({}): such a message could \
             never be held; lower the one or raise the other",
            config.max_message_size, config.memory_budget
        ));
    }
    config.tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(wsecho::TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => return Err("--tls-cert needs --tls-key, the certificate's key".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert, its certificate".into()),
    };
    Ok(Some(config))
}

fn value<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let raw = parser.value().map_err(|e| e.to_string())?;
    let text = raw.to_string_lossy().into_owned();
    text.parse()
        .map_err(|error| format!("invalid value '{text}' for {flag}: {error}"))
}

fn positive(number: usize, flag: &str) -> Result<usize, String> {
    if number == 0 {
        return Err(format!("{flag} must be at least 1"));
    }
    Ok(number)
}

/// Seconds, fractions allowed (`0.5`), more than zero.
fn seconds(parser: &mut lexopt::Parser, flag: &str) -> Result<Duration, String> {
    let secs: f64 = value(parser, flag)?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{flag} takes seconds between 0 and 86400, not {secs}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `wsecho ping`: parse, connect, ping until the count or Ctrl-C, summarise.
fn ping_command(args: Vec<std::ffi::OsString>) -> ExitCode {
    let options = match parse_ping_args(lexopt::Parser::from_args(args)) {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wsecho ping: {message}; see 'wsecho ping --help'");
            return ExitCode::from(2);
        }
    };
    let mut socket = match ping::connect(&options.url, options.timeout) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("wsecho ping: {error}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C ends the waits between messages, and (by shutting the socket) a wait for an echo.
    let (stop_sender, stop) = crossbeam_channel::bounded::<()>(1);
    let waker = socket.get_ref().try_clone().ok();
    let interrupts = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT]);
    if let Ok(mut interrupts) = interrupts {
        std::thread::spawn(move || {
            if interrupts.forever().next().is_some() {
                let _ = stop_sender.send(());
                if let Some(waker) = waker {
                    let _ = waker.shutdown(std::net::Shutdown::Read);
                }
            }
        });
    }
    println!("PING {}: {}-byte text messages", options.url, options.size);
    let started = std::time::Instant::now();
    let wait_or_stop = |wait: Duration| {
        !matches!(
            stop.recv_timeout(wait),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        )
    };
    let tally = ping::run(&options, &mut socket, &wait_or_stop, &mut std::io::stdout());
    print!("\n{}", tally.summary(&options.url, started.elapsed()));
    if tally.sent > 0 && tally.received == tally.sent && tally.mismatched == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn parse_ping_args(mut parser: lexopt::Parser) -> Result<Option<ping::PingOptions>, String> {
    use lexopt::prelude::*;
    let mut options = ping::PingOptions {
        url: String::new(),
        interval: Duration::from_secs(1),
        size: 32,
        count: None,
        timeout: Duration::from_secs(5),
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("interval") => options.interval = seconds(&mut parser, "--interval")?,
            Long("size") => options.size = value(&mut parser, "--size")?,
            Long("count") => {
                options.count = Some(positive(value(&mut parser, "--count")?, "--count")? as u64)
            }
            Long("timeout") => options.timeout = seconds(&mut parser, "--timeout")?,
            Short('h') | Long("help") => {
                print!("{PING_HELP}");
                return Ok(None);
            }
            Value(url) if options.url.is_empty() => {
                options.url = url.to_string_lossy().into_owned()
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if options.url.is_empty() {
        return Err("a URL is needed, like ws://127.0.0.1:8087/echo".into());
    }
    Ok(Some(options))
}

/// SIGINT and SIGTERM begin a graceful shutdown; a second one exits at once.
fn stop_on_signals(mut signals: Signals, trigger: wsecho::Trigger) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if received.next().is_some() {
                log::info!("shutting down: closing every connection with 1001 (signal again to quit at once)");
                trigger.fire();
            }
            if received.next().is_some() {
                log::warn!("second signal: exiting without waiting for connections");
                std::process::exit(1);
            }
        })?;
    Ok(())
}

/// SIGHUP reloads the TLS certificate and key; a bad new pair is logged and the old one kept.
fn reload_on_sighup(
    mut signals: Signals,
    reloader: Option<wsecho::TlsReloader>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                match &reloader {
                    None => log::info!("SIGHUP: nothing to reload (no --tls-cert)"),
                    Some(reloader) => match reloader.reload() {
                        Ok(files) => {
                            log::info!("SIGHUP: reloaded the TLS {files}; new connections use them")
                        }
                        Err(error) => {
                            log::error!("SIGHUP: kept the TLS certificate in use: {error}")
                        }
                    },
                }
            }
        })?;
    Ok(())
}

/// One log line per panic, naming the thread (the connection) and where it happened.
fn log_panics_as_one_line() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        log::error!("thread '{}' panicked{location}", thread_name());
    }));
}

/// The name the kernel knows this thread by: connection threads are not started by std, which
/// knows no name for them.
fn thread_name() -> String {
    let mut name = [0u8; 16];
    // SAFETY: the buffer is as long as we say; the kernel writes a NUL-terminated name.
    let found = unsafe {
        libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr().cast(), name.len())
    };
    let name = std::ffi::CStr::from_bytes_until_nul(&name)
        .ok()
        .filter(|_| found == 0);
    name.map_or("?".into(), |name| name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Config>, String> {
        parse_args(lexopt::Parser::from_args(args.iter().copied()))
    }

    /// The text after `flag` in the help, up to the next option.
    fn entry(help: &str, flag: &str) -> String {
        let after = help
            .split(flag)
            .nth(1)
            .unwrap_or_else(|| panic!("{flag} missing"));
        after.split("\n  -").next().unwrap().to_string()
    }

    #[test]
    fn help_shows_the_defaults_the_server_runs_with() {
        let help = help();
        let defaults = Config::default();
        for (flag, default) in [
            ("--http ADDR", defaults.http.to_string()),
            ("--ws ADDR", defaults.ws.to_string()),
            (
                "--policy-port PORT",
                defaults.policy_port.unwrap().to_string(),
            ),
            ("--policy-domain DOMAIN", defaults.policy_domain.clone()),
            ("--www DIR", "built in".to_string()),
            (
                "--max-message-size BYTES",
                defaults.max_message_size.to_string(),
            ),
            ("--max-queue BYTES", defaults.max_queue.to_string()),
            ("--memory-budget BYTES", defaults.memory_budget.to_string()),
            ("--max-connections N", defaults.max_connections.to_string()),
            (
                "--max-page-connections N",
                defaults.max_page_connections.to_string(),
            ),
            ("--max-per-address N", defaults.max_per_address.to_string()),
            (
                "--handshake-timeout SECS",
                defaults.handshake_timeout.as_secs().to_string(),
            ),
            (
                "--ping-interval SECS",
                defaults.ping_interval.as_secs().to_string(),
            ),
            ("--allow-origin ORIGIN", "same host only".to_string()),
            ("--host NAME", "any".to_string()),
            ("--trusted-proxy ADDR", "none".to_string()),
        ] {
            let entry = entry(&help, flag);
            assert!(
                entry.contains(&format!("[default: {default}]")),
                "{flag}: {entry}"
            );
        }
    }

    #[test]
    fn every_flag_sets_its_field() {
        let config = parse(&[
            "--http",
            "127.0.0.1:1",
            "--ws",
            "[::1]:2",
            "--policy-port",
            "0",
            "--policy-domain",
            "example.com",
            "--www",
            "/srv/www",
            "--max-message-size",
            "100",
            "--max-queue",
            "200",
            "--memory-budget",
            "300",
            "--max-connections",
            "3",
            "--max-page-connections",
            "4",
            "--handshake-timeout",
            "0.5",
            "--ping-interval",
            "7",
            "--allow-origin",
            "http://a.test",
            "--allow-origin",
            "*",
            "--max-per-address",
            "5",
            "--host",
            "chat.example",
            "--host",
            "localhost",
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy",
            "::1",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.http.to_string(), "127.0.0.1:1");
        assert_eq!(config.ws.to_string(), "[::1]:2");
        assert_eq!(config.policy_port, None);
        assert_eq!(config.policy_domain, "example.com");
        assert_eq!(config.www, Some(PathBuf::from("/srv/www")));
        assert_eq!(config.max_message_size, 100);
        assert_eq!(config.max_queue, 200);
        assert_eq!(config.memory_budget, 300);
        assert_eq!(config.max_connections, 3);
        assert_eq!(config.max_page_connections, 4);
        assert_eq!(config.max_per_address, 5);
        assert_eq!(config.handshake_timeout, Duration::from_millis(500));
        assert_eq!(config.ping_interval, Duration::from_secs(7));
        assert_eq!(config.allowed_origins, ["http://a.test", "*"]);
        assert_eq!(config.allowed_hosts, ["chat.example", "localhost"]);
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(proxies, ["127.0.0.1", "::1"]);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, says) in [
            (&["--max-queue", "0"][..], "--max-queue must be at least 1"),
            (&["--max-connections", "many"][..], "for --max-connections"),
            (
                &["--ping-interval", "0"][..],
                "--ping-interval takes seconds",
            ),
            (&["--bogus"][..], "--bogus"),
            (
                &["--memory-budget", "1000", "--max-message-size", "1001"][..],
                "--max-message-size (1001) is larger than --memory-budget (1000)",
            ),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.contains(says), "{args:?}: {error}");
        }
    }
}
