//! tokio-tungstenite echo (the fastest async Rust peer): every message straight back.
//! Run: tokio-echo PORT
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
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

#[tokio::main]
async fn main() {
    let port = std::env::args().nth(1).expect("usage: tokio-echo PORT");
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("bind");
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve(stream));
    }
}
