//! The floor for wsecho's design: a thread per connection, blocking std::net, no WebSocket
//! work at all. It answers the upgrade request with a bare 101 (no key check) and then copies
//! bytes back verbatim; wsload accepts its own masked frames as echoes.
//! Build: rustc -O tcp_echo.rs. Run: tcp_echo PORT
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn main() {
    let port = std::env::args().nth(1).expect("usage: tcp_echo PORT");
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}
