//! A minimal socket.io v4 client (Engine.IO over WebSocket) for the `/sfu` namespace:
//! emit-with-ack, server events, answering the server's acks, and heartbeats.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const NS: &str = "/sfu";

/// An event the server sent; `ack` is set when it expects an answer (`update`).
pub struct ServerEvent {
    pub name: String,
    pub data: Value,
    pub ack: Option<u64>,
}

pub struct Sio {
    out: mpsc::UnboundedSender<String>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next: AtomicU64,
}

impl Sio {
    /// Connects to `http://addr` and enters the `/sfu` namespace.
    pub async fn connect(addr: &str) -> Result<(Sio, mpsc::UnboundedReceiver<ServerEvent>)> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .context("connect")?;
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
            .await
            .context("websocket")?;
        let (mut sink, mut stream) = ws.split();
        // Engine.IO open packet.
        match stream.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => bail!("no Engine.IO open packet: {other:?}"),
        }
        sink.send(Message::text(format!("40{NS},"))).await?;
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with(&format!("40{NS},")) => break,
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    sink.send(Message::text("3")).await?
                }
                other => bail!("namespace connect refused: {other:?}"),
            }
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                // An empty frame is ours: close the connection.
                if text.is_empty() || sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_pending = pending.clone();
        let pong = out_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let text = text.as_str();
                if text == "2" {
                    let _ = pong.send("3".into());
                    continue;
                }
                let Some(rest) = text
                    .strip_prefix("4")
                    .and_then(|r| r.get(..1).map(|k| (k, &r[1..])))
                else {
                    continue;
                };
                let (kind, rest) = rest;
                let Some(rest) = rest.strip_prefix(&format!("{NS},")) else {
                    continue;
                };
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let id = rest[..digits].parse::<u64>().ok();
                let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(&rest[digits..])
                else {
                    continue;
                };
                match kind {
                    "3" => {
                        if let Some(tx) = id.and_then(|id| {
                            reader_pending
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id)
                        }) {
                            let _ = tx.send(if args.is_empty() {
                                Value::Null
                            } else {
                                args.swap_remove(0)
                            });
                        }
                    }
                    "2" => {
                        if args.is_empty() {
                            continue;
                        }
                        let name = args.remove(0).as_str().unwrap_or_default().to_owned();
                        let data = if args.is_empty() {
                            Value::Null
                        } else {
                            args.swap_remove(0)
                        };
                        let _ = ev_tx.send(ServerEvent {
                            name,
                            data,
                            ack: id,
                        });
                    }
                    _ => {}
                }
            }
            // Connection gone: fail every pending request.
            reader_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        });
        Ok((
            Sio {
                out: out_tx,
                pending,
                next: AtomicU64::new(1),
            },
            ev_rx,
        ))
    }

    /// Emits `event` with `data` and waits for the ack.
    pub async fn request(&self, event: &str, data: Value) -> Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let frame = format!("42{NS},{id}{}", Value::Array(vec![event.into(), data]));
        self.out.send(frame).map_err(|_| anyhow!("socket closed"))?;
        let reply = rx
            .await
            .map_err(|_| anyhow!("socket closed before `{event}` ack"))?;
        if let Some(error) = reply.get("error") {
            bail!("`{event}` refused: {error}");
        }
        Ok(reply)
    }

    /// Answers a server event that asked for an ack.
    pub fn ack(&self, id: u64, data: Value) {
        let _ = self
            .out
            .send(format!("43{NS},{id}{}", Value::Array(vec![data])));
    }

    /// Closes the WebSocket (a disconnect is a leave).
    pub fn close(&self) {
        let _ = self.out.send(format!("41{NS},"));
        let _ = self.out.send(String::new());
    }
}
