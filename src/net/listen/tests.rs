use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What the kernel allows as a backlog on this host.
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(128)
}

/// A fresh folder in the temp folder for a test's socket files, removed with them when the
/// test is done with it.
struct Folder(PathBuf);

impl Folder {
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn folder(name: &str) -> Folder {
    let folder = std::env::temp_dir().join(format!("wsecho-listen-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).unwrap();
    Folder(folder)
}

fn loopback() -> ListenAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn a_crowd_larger_than_the_standard_backlog_connects_before_anyone_is_accepted() {
    let listener = Listener::bind(&loopback()).unwrap();
    let addr = listener.local().tcp().unwrap();
    // Nobody accepts: every connect must find room in the queue. With the standard
    // library's backlog of 128 the 130th would wait for a SYN retry and time out.
    let crowd = 600.min(somaxconn());
    assert!(
        crowd > 129,
        "this host caps backlogs at {} (net.core.somaxconn); the test needs more than 129",
        somaxconn()
    );
    let mut clients = Vec::with_capacity(crowd);
    for n in 0..crowd {
        let client = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .unwrap_or_else(|error| panic!("connect {n} of {crowd}: {error}"));
        clients.push(client);
    }
    assert_eq!(clients.len(), crowd);
}

#[test]
fn addresses_parse_as_tcp_or_unix_and_a_bare_port_is_explained() {
    assert_eq!(
        "127.0.0.1:8087".parse::<ListenAddr>(),
        Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8087))))
    );
    let unix: ListenAddr = "unix:/run/wsecho/ws.sock".parse().unwrap();
    assert_eq!(unix, ListenAddr::Unix(PathBuf::from("/run/wsecho/ws.sock")));
    assert_eq!(unix.to_string(), "unix:/run/wsecho/ws.sock");
    assert_eq!(unix.tcp(), None);
    let bare = "20080".parse::<ListenAddr>().unwrap_err();
    assert!(
        bare.contains("HOST:PORT") && bare.contains("127.0.0.1:20080"),
        "{bare}"
    );
    let nonsense = "localhost:80".parse::<ListenAddr>().unwrap_err();
    assert!(nonsense.contains("IP address"), "{nonsense}");
    assert!("unix:".parse::<ListenAddr>().unwrap_err().contains("path"));
}

#[test]
fn a_unix_socket_is_made_for_owner_and_group_serves_local_clients_and_goes_at_drop() {
    let folder = folder("serve");
    let path = folder.join("ws.sock");
    let listener = Listener::bind(&ListenAddr::Unix(path.clone())).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, UNIX_MODE);
    let mut client = UnixStream::connect(&path).unwrap();
    let (wire, peer) = listener.accept().unwrap();
    assert_eq!(peer, LOCAL_PEER);
    client.write_all(b"hello").unwrap();
    let Wire::Unix(mut server_side) = wire else {
        panic!("a Unix socket's connection is a Unix stream");
    };
    let mut got = [0; 5];
    server_side.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    drop(listener);
    assert!(
        !path.exists(),
        "the socket file is removed with its listener"
    );
}

#[test]
fn a_stale_socket_file_is_replaced_but_a_live_one_or_another_file_is_not() {
    let folder = folder("stale");
    let stale = folder.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap()); // its file stays, nobody listens
    assert!(stale.exists());
    let replaced = Listener::bind(&ListenAddr::Unix(stale.clone())).unwrap();
    UnixStream::connect(&stale).expect("the new listener serves the old path");
    drop(replaced);

    let live = folder.join("live.sock");
    let _other = UnixListener::bind(&live).unwrap();
    let error = Listener::bind(&ListenAddr::Unix(live.clone()))
        .err()
        .unwrap();
    assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
    UnixStream::connect(&live).expect("the live socket is left alone");

    let plain = folder.join("notes.txt");
    fs::write(&plain, "keep me").unwrap();
    let error = Listener::bind(&ListenAddr::Unix(plain.clone()))
        .err()
        .unwrap();
    assert_eq!(error.kind(), io::ErrorKind::AlreadyExists, "{error}");
    assert_eq!(fs::read_to_string(&plain).unwrap(), "keep me");
}

#[test]
fn dropping_a_listener_leaves_a_socket_another_process_put_at_its_path() {
    let folder = folder("replaced");
    let path = folder.join("ws.sock");
    let first = Listener::bind(&ListenAddr::Unix(path.clone())).unwrap();
    fs::remove_file(&path).unwrap();
    let _second = UnixListener::bind(&path).unwrap();
    drop(first);
    assert!(path.exists(), "the newer socket's file stays");
    UnixStream::connect(&path).unwrap();
}

#[test]
fn an_inherited_socket_is_served_as_what_it_is_and_anything_else_is_refused() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = Listener::inherited(OwnedFd::from(tcp)).unwrap();
    assert_eq!(listener.local(), &ListenAddr::Tcp(addr));
    let _client = TcpStream::connect(addr).unwrap();
    let (_wire, peer) = listener.accept().unwrap();
    assert!(peer.ip().is_loopback() && peer.port() != 0);

    let folder = folder("inherited");
    let path = folder.join("ws.sock");
    let unix = UnixListener::bind(&path).unwrap();
    let listener = Listener::inherited(OwnedFd::from(unix)).unwrap();
    assert_eq!(listener.local(), &ListenAddr::Unix(path.clone()));
    drop(listener);
    assert!(
        path.exists(),
        "an inherited socket's file belongs to whoever made it"
    );

    let connected = TcpStream::connect(addr).unwrap();
    let error = Listener::inherited(OwnedFd::from(connected)).err().unwrap();
    assert!(error.to_string().contains("not a listening"), "{error}");
}
