//! tokio-tungstenite serving wsecho's /chat protocol (see README), for the fanout bench: one
//! room as a `tokio::sync::broadcast` channel, each message serialised once. Each connection
//! has a reader task and a writer task; the writer `feed`s every frame already waiting (its
//! own replies and the room's messages) and flushes once when nothing more is queued, so
//! deliveries that arrive faster than one write each leave several frames per write. That is
//! how an async server is written for fan-out, and the peer the issue measured.
//! Run: tokio-chat PORT [CERT KEY]   (with a certificate and key: wss)
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

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

/// Most frames fed before a flush, so one member's queue cannot hold its frames back forever.
const MOST_FRAMES_PER_FLUSH: usize = 256;

/// One member's writer: waits for a frame, feeds it and every frame already queued, then
/// flushes. Room messages go out only once `joined` (the reader sets it with the welcome).
async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    mut out: SplitSink<WebSocketStream<S>, Message>,
    mut replies: mpsc::UnboundedReceiver<Message>,
    mut heard: broadcast::Receiver<Said>,
    id: u64,
    joined: Arc<AtomicBool>,
) {
    let wanted = |said: Said| (said.0 != id && joined.load(Ordering::Acquire)).then(|| Message::Text(said.1));
    loop {
        let first = tokio::select! {
            biased;
            reply = replies.recv() => match reply { Some(reply) => Some(reply), None => return },
            said = heard.recv() => match said {
                Ok(said) => wanted(said),
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let Some(first) = first else { continue };
        if out.feed(first).await.is_err() {
            return;
        }
        for _ in 1..MOST_FRAMES_PER_FLUSH {
            let next = match replies.try_recv() {
                Ok(reply) => Some(reply),
                Err(_) => match heard.try_recv() {
                    Ok(said) => wanted(said),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => None,
                    Err(_) => break,
                },
            };
            if let Some(next) = next {
                if out.feed(next).await.is_err() {
                    return;
                }
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, id: u64, room: Arc<Room>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (out, mut incoming) = ws.split();
    let (reply, replies) = mpsc::unbounded_channel();
    let joined = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write(out, replies, room.channel.subscribe(), id, Arc::clone(&joined)));
    let mut name: Option<String> = None;
    while let Some(Ok(message)) = incoming.next().await {
        let Message::Text(text) = message else {
            if message.is_close() {
                break;
            }
            continue;
        };
        let answer = match serde_json::from_str::<Value>(text.as_str()) {
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
                    let welcome = json!({"type": "welcome", "name": given, "members": members});
                    if reply.send(Message::text(welcome.to_string())).is_err() {
                        break;
                    }
                    joined.store(true, Ordering::Release);
                    room.publish(id, json!({"type": "joined", "name": given, "count": count}));
                    name = Some(given);
                    None
                }
                (Some("say"), Some(from)) if request["text"].is_string() => {
                    let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                    room.publish(0, json!({"type": "said", "from": from, "text": request["text"], "at": at}));
                    None
                }
                _ => Some(json!({"type": "error", "reason": "bad request"})),
            },
        };
        if let Some(answer) = answer {
            if reply.send(Message::text(answer.to_string())).is_err() {
                break;
            }
        }
    }
    drop(reply);
    writer.abort();
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
