//! tokio-tungstenite echo (the fastest async Rust peer): every message straight back.
//! Run: tokio-echo PORT [CERT KEY]   (with a certificate and key: wss)
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

mod tls;

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() || message.is_binary() {
            if ws.send(message).await.is_err() {
                return;
            }
        } else if message.is_close() {
            let _ = ws.close(None).await;
            return;
        }
    }
}

async fn accept(stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve(stream).await,
        Some(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                serve(stream).await
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let port = std::env::args().nth(1).expect("usage: tokio-echo PORT [CERT KEY]");
    let tls = tls::acceptor_from_args();
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("bind");
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(accept(stream, tls.clone()));
    }
}
