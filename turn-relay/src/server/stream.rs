//! TCP and TLS listeners (TURN over TCP/TLS with UDP relay, RFC 8656 §3.1).

use super::{ClientSink, Shared};
use crate::allocation::FiveTuple;
use crate::relay::{ClientAction, ConnectionId, Direction};
use crate::stun::{channel_data, classify, PacketKind};
use crate::{Error, Transport};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// A connection that sends nothing for this long is closed (and its allocation
/// with it); clients refresh well within the default 10-minute lifetime.
const IDLE_TIMEOUT: Duration = Duration::from_secs(900);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued towards a slow client before further ones are dropped.
const WRITE_QUEUE: usize = 512;

pub(super) fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

pub(super) fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let open = |p: &Path| {
        std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .map_err(|e| Error::Tls(format!("{}: {e}", p.display())))
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut conns = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let ft = FiveTuple {
            transport,
            client: peer,
            server: local,
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                conns.spawn(serve(shared, tcp, ft, shutdown));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => serve(shared, s, ft, shutdown).await,
                        Ok(Err(e)) => {
                            tracing::debug!(client = %ft.client, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %ft.client, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    // Connections see the same shutdown signal; give them a moment to finish.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Length of the frame at the start of `b`: `Ok(None)` if more bytes are needed,
/// `Err` if the stream is not STUN/ChannelData (the connection is then closed).
fn frame_len(b: &[u8]) -> Result<Option<usize>, ()> {
    if b.is_empty() {
        return Ok(None);
    }
    match classify(b) {
        PacketKind::ChannelData => Ok(channel_data::stream_frame_len(b)),
        PacketKind::Stun if b.len() >= 4 => {
            Ok(Some(20 + u16::from_be_bytes([b[2], b[3]]) as usize))
        }
        PacketKind::Stun => Ok(None),
        PacketKind::Other => Err(()),
    }
}

async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    ft: FiveTuple,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    // Hands the write half back once the queue is closed (for a data connection, which
    // goes on as a pipe).
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return None;
            }
        }
        Some(wr)
    });
    let sink = ClientSink::Stream(tx);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(512);
    // Set by a successful ConnectionBind (RFC 6062): what is left of `buf` goes to the peer.
    let mut bound = None;
    'conn: loop {
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            let need = match frame_len(rest) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(()) => break 'conn,
            };
            if rest.len() < need {
                break;
            }
            let frame = &rest[..need];
            let action = shared
                .core()
                .handle_client(Instant::now(), &ft, &sink, frame, &mut out);
            match action {
                ClientAction::None => {}
                ClientAction::Reply => sink.send(&out, ft.client),
                ClientAction::ToPeer { relay, peer, data } => relay.send_to(&frame[data], peer),
                ClientAction::ConnectionBound { connection } => {
                    sink.send(&out, ft.client);
                    bound = Some((connection, buf.split_off(start + need)));
                    break 'conn;
                }
            }
            start += need;
        }
        buf.drain(..start);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8192);
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            r = tokio::time::timeout(IDLE_TIMEOUT, rd.read_buf(&mut buf)) => match r {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            },
        }
    }
    if let Some((connection, early)) = bound {
        drop(sink);
        // The answer is written before the first byte of the peer's.
        if let Ok(Some(wr)) = writer.await {
            pipe(&shared, connection, rd, wr, early, shutdown).await;
        }
        shared.core().connection_closed(connection);
        return;
    }
    if shared.core().remove_client(&ft) {
        tracing::debug!(client = %ft.client, "connection closed, allocation removed");
    }
    drop(sink);
    if let Ok(Ok(Some(mut wr))) = tokio::time::timeout(Duration::from_secs(1), writer).await {
        let _ = wr.shutdown().await;
    }
}

/// A bound client data connection and its peer connection, byte for byte until both sides
/// have closed (or either fails), the core closes the connection (its allocation went) or
/// the relay stops. The bytes count and obey `max-bps` as datagrams do
/// ([`Relay::tcp_relayed`](crate::relay::Relay::tcp_relayed)).
async fn pipe<R, W>(
    shared: &Shared,
    connection: ConnectionId,
    client_rd: R,
    mut client_wr: W,
    early: Vec<u8>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some((peer, closed)) = shared.tcp.take(connection) else {
        return;
    };
    let (peer_rd, mut peer_wr) = peer.into_split();
    let relayed = async {
        if !early.is_empty()
            && !relay_chunk(shared, connection, Direction::ToPeer, &early, &mut peer_wr).await?
        {
            return Ok((0, 0));
        }
        let up = relay_stream(
            shared,
            connection,
            Direction::ToPeer,
            client_rd,
            &mut peer_wr,
        );
        let down = relay_stream(
            shared,
            connection,
            Direction::ToClient,
            peer_rd,
            &mut client_wr,
        );
        tokio::try_join!(up, down)
    };
    tokio::select! {
        r = relayed => {
            if let Ok((up, down)) = r {
                tracing::debug!(connection = connection.0, up, down, "peer connection ended");
            }
        }
        _ = closed => {}
        _ = shutdown.changed() => {}
    }
    let _ = client_wr.shutdown().await;
    let _ = peer_wr.shutdown().await;
}

/// Bytes read at once from either side of a bound connection.
const STREAM_CHUNK: usize = 16 * 1024;

/// One direction of a bound connection, until `from` ends (then `to` is shut down: a
/// half-close goes through, as TCP relays it) or the core no longer knows the connection.
/// Returns the bytes relayed.
async fn relay_stream<R, W>(
    shared: &Shared,
    connection: ConnectionId,
    direction: Direction,
    mut from: R,
    to: &mut W,
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(total);
        }
        if !relay_chunk(shared, connection, direction, &buf[..n], to).await? {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Writes `data` on, after the wait the allocation's `max-bps` asks for. `false` if the
/// connection is no longer bound.
async fn relay_chunk<W: AsyncWrite + Unpin>(
    shared: &Shared,
    connection: ConnectionId,
    direction: Direction,
    data: &[u8],
    to: &mut W,
) -> std::io::Result<bool> {
    let wait = shared
        .core()
        .tcp_relayed(Instant::now(), connection, direction, data.len());
    let Some(wait) = wait else {
        return Ok(false);
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    to.write_all(data).await?;
    Ok(true)
}
