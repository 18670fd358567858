//! The `wsecho` command: flags to a `Config`, logging, signals, exit codes.
//! Exit 0 after a clean shutdown, 2 for a mistake in the command line or a file it names, 1
//! when the host refuses what it asks (an address in use, a privileged port, a thread).
//! `wsecho ping URL` measures round trips to any echo endpoint, with ping(8)'s exit codes.

mod client;
mod flags;
mod logger;
mod ping;
mod tunables;
mod words;

use signal_hook::iterator::Signals;
use std::process::ExitCode;
use std::time::Duration;
use wsecho::Server;

/// `wsecho --help`, its defaults read from `Config::default()`.
fn help() -> String {
    format!(
        "\
wsecho: a WebSocket echo server and chat room with a browser page and a Flash fallback.

Usage: wsecho [OPTIONS]
       wsecho ping [OPTIONS] URL     round trips to an echo endpoint, like ping(8)

Open the printed page URL, press Connect, type a message: it comes back.
The text `quit` makes the server close the connection (code 1000).
The chat room is the page's chat.html, or any client of ws://HOST:PORT/chat.

Options:
{options}  -h, --help                print this help
  -V, --version             print the version

Logging: RUST_LOG=debug (or warn, ...) [default: info]. Stop with Ctrl-C or SIGTERM.
SIGHUP reloads the TLS certificate and key; open connections keep theirs.

Exit status: 0 after a clean stop; 2 for a mistake in the command line or a file it
names (a flag or value, the page folder, certificate, key, Redis URL, a program, a
socket-activation socket); 1 when the host refuses (an address in use, no permission
for a port below 1024, no thread).

Sizing a host: every connection (either port) takes a thread, a descriptor and two
memory mappings. At start, caps above what `ulimit -n`, vm.max_map_count and the
thread limits (kernel.threads-max, kernel.pid_max, the cgroup's pids.max) allow are
lowered to fit, with one warning naming the limit to raise: docs/operating.md,
\"Sizing a host\".
",
        options = flags::options_help(),
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
    let restart_failed = tunables::restart_with_tunables();
    let config = match flags::parse_args(lexopt::Parser::from_args(args)) {
        Ok(Some(config)) => config,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wsecho: {message}; see 'wsecho --help'");
            return ExitCode::from(2);
        }
    };
    // The library names `Config` fields; the operator reads the flags that set them.
    logger::init(|text| flags::with_flags(text).into_owned());
    log_panics_as_one_line();
    if let Some(line) = restart_failed {
        log::warn!("{line}");
    }
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
        // A page folder, certificate, key or Redis URL that cannot be used is a mistake on the
        // command line (and sockets socket activation cannot place, one in the .socket unit).
        Err(
            error @ (wsecho::StartError::Tls(_)
            | wsecho::StartError::Redis(_)
            | wsecho::StartError::Www { .. }
            | wsecho::StartError::Activation(_)
            | wsecho::StartError::Config(_)),
        ) => {
            log::error!("{error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    if let Err(error) = stop_on_signals(stops, &server) {
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

/// A flag's value for `wsecho ping`.
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
    let text: String = value(parser, flag)?;
    let secs = flags::seconds(&text).map_err(|error| format!("{flag}: {error}"))?;
    if secs.is_zero() || secs > Duration::from_secs(86_400) {
        return Err(format!(
            "{flag} takes seconds between 0 and 86400, not {}",
            seconds_text(secs)
        ));
    }
    Ok(secs)
}

/// A duration as seconds with its milliseconds (`2.5`, `30`), without floating point: the
/// binary would carry 10 KB of float formatting for it.
pub fn seconds_text(duration: Duration) -> String {
    let (secs, millis) = (duration.as_secs(), duration.subsec_millis());
    match millis {
        0 => secs.to_string(),
        _ => format!("{secs}.{millis:03}")
            .trim_end_matches('0')
            .to_string(),
    }
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
    let waker = socket.stream().try_clone().ok();
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
fn stop_on_signals(mut signals: Signals, server: &Server) -> std::io::Result<()> {
    let (trigger, restart) = (server.trigger(), server.on_shutdown().is_restart());
    let code = if restart { 1012 } else { 1001 };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if received.next().is_some() {
                log::info!(
                    "shutting down: closing every connection with {code} (signal again to quit \
                     at once)"
                );
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
                        Ok(files) => log::info!(
                            "SIGHUP: reloaded the TLS certificate {} and key {}; new connections \
                             use them",
                            files.cert.display(),
                            files.key.display()
                        ),
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
