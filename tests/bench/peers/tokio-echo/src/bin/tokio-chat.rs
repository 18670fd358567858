//! tokio-tungstenite serving wsecho's /chat protocol (see README), for the fanout bench: one
//! room as a `tokio::sync::broadcast` channel, each message serialised once; a task per
//! connection. Run: tokio-chat PORT [CERT KEY]   (with a certificate and key: wss)
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[path = "../tls.rs"]
mod tls;

/// (connection not to deliver to, the message)
type Said = (u64, Utf8Bytes);

struct Room {
    names: Mutex<Vec<(u64, String)>>,
    channel: broadcast::Sender<Said>,
}

impl Room {
    fn publish(&self, except: u64, message: Value) {
        let _ = self.channel.send((except, message.to_string().into()));
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, id: u64, room: Arc<Room>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut out, mut incoming) = ws.split();
    let mut heard = room.channel.subscribe();
    let mut name: Option<String> = None;
    loop {
        tokio::select! {
            message = incoming.next() => {
                let Some(Ok(message)) = message else { break };
                let Message::Text(text) = message else {
                    if message.is_close() { break }
                    continue;
                };
                let reply = match serde_json::from_str::<Value>(text.as_str()) {
                    Err(_) => Some(json!({"type": "error", "reason": "not JSON"})),
                    Ok(request) => match (request["type"].as_str(), &name) {
                        (Some("join"), None) if request["name"].is_string() => {
                            let wanted = request["name"].as_str().unwrap_or_default().trim().to_string();
                            let (given, members, count) = {
                                let mut names = room.names.lock().unwrap();
                                let mut given = wanted.clone();
                                let mut n = 2;
                                while names.iter().any(|(_, taken)| *taken == given) {
                                    given = format!("{wanted} {n}");
                                    n += 1;
                                }
                                names.push((id, given.clone()));
                                let members: Vec<String> = names.iter().map(|(_, n)| n.clone()).collect();
                                (given, members, names.len())
                            };
                            room.publish(id, json!({"type": "joined", "name": given, "count": count}));
                            name = Some(given.clone());
                            Some(json!({"type": "welcome", "name": given, "members": members}))
                        }
                        (Some("say"), Some(from)) if request["text"].is_string() => {
                            let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                            room.publish(0, json!({"type": "said", "from": from, "text": request["text"], "at": at}));
                            None
                        }
                        _ => Some(json!({"type": "error", "reason": "bad request"})),
                    },
                };
                if let Some(reply) = reply {
                    if out.send(Message::text(reply.to_string())).await.is_err() { break }
                }
            }
            said = heard.recv() => match said {
                Ok((except, text)) if except != id && name.is_some() => {
                    if out.send(Message::Text(text)).await.is_err() { break }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    if let Some(name) = name {
        let count = {
            let mut names = room.names.lock().unwrap();
            names.retain(|(member, _)| *member != id);
            names.len()
        };
        room.publish(id, json!({"type": "left", "name": name, "count": count}));
    }
}

async fn accept(stream: TcpStream, id: u64, room: Arc<Room>, tls: Option<tokio_rustls::TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve(stream, id, room).await,
        Some(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                serve(stream, id, room).await
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let port = std::env::args().nth(1).expect("usage: tokio-chat PORT [CERT KEY]");
    let tls = tls::acceptor_from_args();
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("bind");
    let room = Arc::new(Room {
        names: Mutex::new(Vec::new()),
        channel: broadcast::channel(4096).0,
    });
    let ids = AtomicU64::new(1);
    while let Ok((stream, _)) = listener.accept().await {
        let (id, room, tls) = (ids.fetch_add(1, Ordering::Relaxed), Arc::clone(&room), tls.clone());
        tokio::spawn(accept(stream, id, room, tls));
    }
}
