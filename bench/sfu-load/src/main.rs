//! `sfu-load`: load tool for the SFU (docs/BENCHMARKS.md, "SFU").
//!
//! - `run`: R rooms, each with P publishers (synthetic VP8 + Opus, stamped payloads) and S
//!   subscribers, all `webrtc`-crate peers joining over `/sfu`; measures what arrives in a
//!   window (forwarded packets/s, subscriber streams, loss, one-way latency p50/p99) and the
//!   server's CPU per forwarded packet and RSS from /proc; then (with `--baseline`) the same
//!   fan-out through a plain-UDP relay process, and our ratio to it.
//! - `churn`: repeated join/leave cycles; server RSS before/after and `GET /api/rooms` empty.
//! - `relay`: the plain-UDP fan-out (used by `run --baseline`).

mod client;
mod media;
mod procfs;
mod sio;
mod stats;
mod udp;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UdpSocket,
    time::MissedTickBehavior,
};

use client::{Client, Role, OPUS_PT, SSRCS_PER_CLIENT, VP8_PT};
use media::{now_us, opus_frame, Stamp, Vp8Source, SIMULCAST};
use stats::{Stats, LAYERS};
use webrtc::media_stream::track_local::TrackLocal;

#[derive(Parser)]
#[command(about = "SFU load tool")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Shape {
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: u32,
    /// Publishers per room (each also receives the others).
    #[arg(long, default_value_t = 1)]
    publishers: u32,
    /// Receive-only participants per room.
    #[arg(long, default_value_t = 4)]
    subscribers: u32,
    /// Video bitrate per publisher.
    #[arg(long, default_value_t = 1000)]
    video_kbps: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Publishers send simulcast (the layers of `media::SIMULCAST`, the top one at
    /// --video-kbps); the receive-only participants ask for low, medium and high in turn,
    /// publishers get the default (the best).
    #[arg(long)]
    simulcast: bool,
    /// Every participant sends transport-wide congestion control feedback on what it
    /// receives, as browsers do (what the server's bandwidth estimation works on).
    #[arg(long)]
    feedback: bool,
    /// Every participant reports a receiver estimate (REMB, 10 Mbit/s: nothing limits the
    /// layers) on each video it receives, as Chromium does when the server leaves out
    /// transport-wide feedback (`bandwidth_estimation = "remb"`).
    #[arg(long)]
    remb: bool,
}

impl Shape {
    /// The `layer` the `index`th receive-only participant of a room asks for.
    fn subscriber_wants(&self, index: u32) -> Option<&'static str> {
        self.simulcast
            .then(|| ["low", "medium", "high"][index as usize % SIMULCAST.len()])
    }

    /// How many participants of a room receive each stream a publisher sends: its audio,
    /// and each video layer (layer 0 without simulcast).
    fn receivers(&self) -> Receivers {
        let others = u64::from(self.publishers - 1 + self.subscribers);
        let mut video = [0; LAYERS];
        if !self.simulcast {
            video[0] = others;
            return Receivers {
                audio: others,
                video,
            };
        }
        // The other publishers take the best layer; receive-only participants their wish.
        video[LAYERS - 1] = u64::from(self.publishers - 1);
        for index in 0..self.subscribers {
            video[index as usize % LAYERS] += 1;
        }
        Receivers {
            audio: others,
            video,
        }
    }
}

/// Receivers per sent stream (see [`Shape::receivers`]).
#[derive(Debug, Clone, Copy)]
struct Receivers {
    audio: u64,
    video: [u64; LAYERS],
}

#[derive(Subcommand)]
enum Cmd {
    Run {
        /// signal server, HOST:PORT (plain HTTP)
        #[arg(long)]
        server: String,
        /// its PID, for CPU and RSS
        #[arg(long)]
        pid: u32,
        #[command(flatten)]
        shape: Shape,
        /// Also run the plain-UDP fan-out baseline with the same shape.
        #[arg(long)]
        baseline: bool,
        /// Have the server record every room (`record {on: true}` from its first publisher)
        /// before measuring.
        #[arg(long)]
        record: bool,
    },
    Churn {
        #[arg(long)]
        server: String,
        #[arg(long)]
        pid: u32,
        /// Join/leave cycles.
        #[arg(long, default_value_t = 300)]
        cycles: u32,
        /// Participants per cycle (they join one room, exchange media, leave).
        #[arg(long, default_value_t = 2)]
        group: u32,
        /// Allowed RSS change between the first tenth and the end, percent.
        #[arg(long, default_value_t = 10.0)]
        rss_tolerance: f64,
    },
    Relay,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Cmd::Relay = cli.cmd {
        return udp::relay();
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Run {
                server,
                pid,
                shape,
                baseline,
                record,
            } => run(&server, pid, &shape, baseline, record).await,
            Cmd::Churn {
                server,
                pid,
                cycles,
                group,
                rss_tolerance,
            } => churn(&server, pid, cycles, group, rss_tolerance).await,
            Cmd::Relay => unreachable!(),
        }
    })
}

/// `GET path` on the plain-HTTP server.
/// GET of an operator endpoint, with the token the server was started with
/// (`SIGNAL_OPERATOR_TOKEN`, as bench/sfu/run.sh sets for both).
async fn http_get_json(server: &str, path: &str) -> Result<Value> {
    let token = std::env::var("SIGNAL_OPERATOR_TOKEN").unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(server).await?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {server}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).await?;
    let text = String::from_utf8_lossy(&body);
    let (_, json) = text.split_once("\r\n\r\n").context("HTTP response")?;
    Ok(serde_json::from_str(json)?)
}

fn forwarded(report: &Value) -> u64 {
    report["forwarded_packets"].as_u64().unwrap_or(0)
}

static SSRC: AtomicU32 = AtomicU32::new(0x1000);

/// Sends synthetic media on a publisher's tracks until aborted.
fn spawn_sender(
    client: &Client,
    stream_base: u32,
    shape: &Shape,
    stats: Arc<Stats>,
) -> tokio::task::JoinHandle<()> {
    let (Some(audio), Some(video)) = (client.audio.clone(), client.video.clone()) else {
        return tokio::spawn(async {});
    };
    let assrc = client.audio_ssrc;
    let fps = shape.fps;
    // One synthetic encoder per layer, each with its own SSRC, sequence numbers, picture ids
    // and extensions (MID and RID with simulcast); one timestamp for all, as a browser's.
    let mut layers: Vec<_> = client
        .video_ssrcs
        .iter()
        .zip(&client.video_extensions)
        .enumerate()
        .map(|(index, (&ssrc, extensions))| {
            let keyframe_every = u64::from(fps) * 2;
            let source = match shape.simulcast {
                true => {
                    let kbps = shape.video_kbps * SIMULCAST[index].percent / 100;
                    Vp8Source::new(kbps, fps, keyframe_every).with_picture_id()
                }
                false => Vp8Source::new(shape.video_kbps, fps, keyframe_every),
            };
            (index, ssrc, extensions.clone(), source, 0u16)
        })
        .collect();
    tokio::spawn(async move {
        let mut vt = tokio::time::interval(Duration::from_micros(1_000_000 / u64::from(fps)));
        let mut at = tokio::time::interval(Duration::from_millis(20));
        vt.set_missed_tick_behavior(MissedTickBehavior::Skip);
        at.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let (mut aseq, mut vts, mut ats, mut vn, mut an) = (0u16, 0u32, 0u32, 0u32, 0u32);
        loop {
            tokio::select! {
                _ = vt.tick() => {
                    vts = vts.wrapping_add(90_000 / fps);
                    for (layer, ssrc, extensions, source, seq) in &mut layers {
                        for mut c in source.next_frame().1 {
                            let sent_us = now_us();
                            Stamp { stream: stream_base + 1, seq: vn, sent_us }.write(&mut c.payload);
                            vn += 1;
                            let mut packet = rtp(VP8_PT, *seq, vts, *ssrc, c.marker, c.payload);
                            for (id, value) in extensions.iter() {
                                if let Err(e) = packet.header.set_extension(*id, value.clone().into()) {
                                    eprintln!("sfu-load: header extension {id}: {e}; this publisher stops");
                                    return;
                                }
                            }
                            *seq = seq.wrapping_add(1);
                            if video.write_rtp(packet).await.is_ok() {
                                stats.sent_video(*layer, sent_us);
                            }
                        }
                    }
                }
                _ = at.tick() => {
                    let mut c = opus_frame(120);
                    let sent_us = now_us();
                    Stamp { stream: stream_base, seq: an, sent_us }.write(&mut c.payload);
                    an += 1;
                    ats = ats.wrapping_add(960);
                    let packet = rtp(OPUS_PT, aseq, ats, assrc, false, c.payload);
                    aseq = aseq.wrapping_add(1);
                    if audio.write_rtp(packet).await.is_ok() {
                        stats.sent_audio(sent_us);
                    }
                }
            }
        }
    })
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: Vec<u8>) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        },
        payload: payload.into(),
    }
}

#[derive(Debug, Default, Clone)]
struct Figures {
    video_pps: f64,
    total_pps: f64,
    video_streams: i64,
    loss_video_pct: f64,
    loss_audio_pct: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_pkt: f64,
    cpu_pct: f64,
    rss_mib: f64,
}

impl Figures {
    fn json(&self) -> Value {
        json!({
            "forwarded_video_pps": self.video_pps.round(),
            "forwarded_pps": self.total_pps.round(),
            "subscriber_video_streams": self.video_streams,
            "loss_video_pct": (self.loss_video_pct * 100.0).round() / 100.0,
            "loss_audio_pct": (self.loss_audio_pct * 100.0).round() / 100.0,
            "latency_p50_ms": self.p50_ms,
            "latency_p99_ms": self.p99_ms,
            "server_cpu_us_per_forwarded_packet": (self.cpu_us_per_pkt * 100.0).round() / 100.0,
            "server_cpu_pct": (self.cpu_pct * 10.0).round() / 10.0,
            "server_rss_mib": (self.rss_mib * 10.0).round() / 10.0,
        })
    }
}

/// Measures one window on `stats`; `forwarded` reads the server's forwarded-packet counter
/// (None: count what the receivers got). Loss compares what arrived with what every sent
/// stream's `receivers` should have got; negative means more arrived (a simulcast layer
/// other than the one asked for).
async fn measure<F, Fut>(
    pid: u32,
    shape: &Shape,
    stats: &Stats,
    receivers: Receivers,
    forwarded: F,
) -> Result<Figures>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    tokio::time::sleep(Duration::from_secs(shape.warmup)).await;
    let d = shape.duration;
    let start = now_us() + 100_000;
    stats.set_window(start, start + d * 1_000_000);
    tokio::time::sleep(Duration::from_micros(100_000)).await;
    let (cpu0, fwd0, t0) = (procfs::cpu_us(pid)?, forwarded().await, Instant::now());
    tokio::time::sleep(Duration::from_secs(d)).await;
    let (cpu1, fwd1, elapsed) = (procfs::cpu_us(pid)?, forwarded().await, t0.elapsed());
    let rss = procfs::rss_kib(pid)?;
    // Let packets stamped inside the window arrive.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rx = [
        stats.received[0].load(Ordering::Relaxed),
        stats.received[1].load(Ordering::Relaxed),
    ];
    // What the receivers should have got: each stream sent times its receivers.
    let expected = [
        stats.sent_audio.load(Ordering::Relaxed) * receivers.audio,
        (0..LAYERS)
            .map(|l| stats.sent_video[l].load(Ordering::Relaxed) * receivers.video[l])
            .sum(),
    ];
    let secs = d as f64;
    let fwd = match (fwd0, fwd1) {
        (Some(a), Some(b)) => b - a,
        _ => rx[0] + rx[1],
    };
    let loss = |k: usize| {
        let expected = expected[k];
        if expected == 0 {
            100.0
        } else {
            100.0 * (1.0 - rx[k] as f64 / expected as f64)
        }
    };
    let cpu = (cpu1 - cpu0) as f64;
    Ok(Figures {
        video_pps: rx[1] as f64 / secs,
        total_pps: (rx[0] + rx[1]) as f64 / secs,
        video_streams: stats.streams[1].load(Ordering::Relaxed),
        loss_video_pct: loss(1),
        loss_audio_pct: loss(0),
        p50_ms: stats.latency_ms(50.0),
        p99_ms: stats.latency_ms(99.0),
        cpu_us_per_pkt: if fwd > 0 { cpu / fwd as f64 } else { f64::NAN },
        cpu_pct: cpu / elapsed.as_micros() as f64 * 100.0,
        rss_mib: rss as f64 / 1024.0,
    })
}

async fn run(server: &str, pid: u32, shape: &Shape, baseline: bool, record: bool) -> Result<()> {
    if baseline && shape.simulcast {
        bail!("the plain-UDP baseline fans out one stream per publisher: no --simulcast with --baseline");
    }
    let per_stream = shape.receivers().audio;
    eprintln!(
        "sfu-load: {} room(s) × ({} publishers + {} subscribers), {} kbit/s VP8{} @ {} fps + Opus 20 ms{}; {} subscriber video streams expected",
        shape.rooms, shape.publishers, shape.subscribers, shape.video_kbps,
        if shape.simulcast { " (top of 3 simulcast layers)" } else { "" }, shape.fps,
        match (shape.feedback, shape.remb) {
            (true, true) => ", transport-wide feedback and REMB",
            (true, false) => ", transport-wide feedback",
            (false, true) => ", REMB",
            (false, false) => "",
        },
        u64::from(shape.rooms) * u64::from(shape.publishers) * per_stream
    );
    let stats = Arc::new(Stats::default());
    let mut clients = Vec::new();
    let mut senders = Vec::new();
    let t0 = Instant::now();
    for r in 0..shape.rooms {
        let room = format!("load-{}-{r}", std::process::id());
        for i in 0..shape.publishers + shape.subscribers {
            let publish = i < shape.publishers;
            let name = format!("{}{r}-{i}", if publish { "pub" } else { "sub" });
            let role = Role {
                publish,
                simulcast: shape.simulcast,
                feedback: shape.feedback,
                remb: shape.remb,
                wants: (!publish)
                    .then(|| shape.subscriber_wants(i - shape.publishers))
                    .flatten(),
            };
            let ssrc = SSRC.fetch_add(SSRCS_PER_CLIENT, Ordering::Relaxed);
            let c = Client::join(server, &room, &name, role, ssrc, stats.clone())
                .await
                .with_context(|| format!("{name} joining {room}"))?;
            c.connected(Duration::from_secs(10)).await?;
            if publish {
                let base = (r * shape.publishers + i) * 2;
                senders.push(spawn_sender(&c, base, shape, stats.clone()));
            }
            clients.push(c);
        }
    }
    eprintln!(
        "sfu-load: {} participants joined in {:.1} s",
        clients.len(),
        t0.elapsed().as_secs_f64()
    );
    if record {
        // The first participant of each room is a publisher.
        let per_room = (shape.publishers + shape.subscribers) as usize;
        for c in clients.iter().step_by(per_room.max(1)) {
            let reply = c.sio.request("record", json!({"on": true})).await?;
            if reply["recording"]["on"] != json!(true) {
                anyhow::bail!("record refused: {reply}");
            }
        }
        eprintln!("sfu-load: the server records every room");
    }
    let server_owned = server.to_owned();
    let sfu = measure(pid, shape, &stats, shape.receivers(), || {
        let server = server_owned.clone();
        async move {
            http_get_json(&server, "/api/rooms")
                .await
                .ok()
                .map(|r| forwarded(&r))
        }
    })
    .await?;
    let expected_streams = i64::from(shape.rooms * shape.publishers) * per_stream as i64;
    for s in &senders {
        s.abort();
    }
    for c in clients {
        c.leave().await;
    }
    let mut out = json!({"shape": {"rooms": shape.rooms, "publishers": shape.publishers, "subscribers": shape.subscribers,
        "video_kbps": shape.video_kbps, "fps": shape.fps, "duration_s": shape.duration, "expected_video_streams": expected_streams,
        "simulcast": shape.simulcast, "feedback": shape.feedback, "remb": shape.remb, "recording": record},
        "sfu": sfu.json()});
    if baseline {
        let b = run_baseline(shape).await?;
        out["udp_baseline"] = b.json();
        out["ratio"] = json!({
            "cpu_per_packet_sfu_over_udp": (sfu.cpu_us_per_pkt / b.cpu_us_per_pkt * 10.0).round() / 10.0,
            "forwarded_pps_sfu_over_udp": (sfu.total_pps / b.total_pps * 1000.0).round() / 1000.0,
            "p99_latency_sfu_minus_udp_ms": ((sfu.p99_ms - b.p99_ms) * 100.0).round() / 100.0,
        });
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The same shape over plain UDP through `sfu-load relay`.
async fn run_baseline(shape: &Shape) -> Result<Figures> {
    let per_stream = shape.receivers().audio;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("relay")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("relay stdout")?).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("port ")
        .context("relay port")?
        .parse()?;
    let relay = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let pid = child.id();
    let stats = Arc::new(Stats::default());
    let mut tasks = Vec::new();
    for r in 0..shape.rooms {
        for i in 0..shape.publishers + shape.subscribers {
            let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            socket.connect(relay).await?;
            let mut hello = udp::HELLO.to_vec();
            hello.extend_from_slice(&r.to_be_bytes());
            socket.send(&hello).await?;
            let mut ack = [0u8; 16];
            tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut ack)).await??;
            {
                let (socket, stats) = (socket.clone(), stats.clone());
                tasks.push(tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    while let Ok(n) = socket.recv(&mut buf).await {
                        if n < 12 {
                            continue;
                        }
                        if let Some(stamp) = Stamp::read(&buf[12..n]) {
                            stats.received(buf[1] & 0x7f == VP8_PT, stamp, now_us());
                        }
                    }
                }));
            }
            if i < shape.publishers {
                let (socket, stats, shape) = (socket.clone(), stats.clone(), shape.clone());
                let base = (r * shape.publishers + i) * 2;
                tasks.push(tokio::spawn(async move {
                    let mut vp8 = Vp8Source::new(shape.video_kbps, shape.fps, u64::from(shape.fps) * 2);
                    let mut vt = tokio::time::interval(Duration::from_micros(1_000_000 / u64::from(shape.fps)));
                    let mut at = tokio::time::interval(Duration::from_millis(20));
                    vt.set_missed_tick_behavior(MissedTickBehavior::Skip);
                    at.set_missed_tick_behavior(MissedTickBehavior::Skip);
                    let (mut vn, mut an) = (0u32, 0u32);
                    let header = |pt: u8| {
                        let mut h = vec![0x80, pt, 0, 0, 0, 0, 0, 0];
                        h.extend_from_slice(&r.to_be_bytes());
                        h
                    };
                    loop {
                        tokio::select! {
                            _ = vt.tick() => {
                                for mut c in vp8.next_frame().1 {
                                    let sent_us = now_us();
                                    Stamp { stream: base + 1, seq: vn, sent_us }.write(&mut c.payload);
                                    vn += 1;
                                    let mut p = header(VP8_PT);
                                    p.extend_from_slice(&c.payload);
                                    if socket.send(&p).await.is_ok() { stats.sent_video(0, sent_us); }
                                }
                            }
                            _ = at.tick() => {
                                let mut c = opus_frame(120);
                                let sent_us = now_us();
                                Stamp { stream: base, seq: an, sent_us }.write(&mut c.payload);
                                an += 1;
                                let mut p = header(OPUS_PT);
                                p.extend_from_slice(&c.payload);
                                if socket.send(&p).await.is_ok() { stats.sent_audio(sent_us); }
                            }
                        }
                    }
                }));
            }
        }
    }
    // Every receiving socket counts as one stream per publisher of its room.
    stats.streams[1].store(
        i64::from(shape.rooms * shape.publishers) * per_stream as i64,
        Ordering::Relaxed,
    );
    let figures = measure(pid, shape, &stats, shape.receivers(), || async { None }).await;
    for t in tasks {
        t.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
    figures
}

async fn churn(server: &str, pid: u32, cycles: u32, group: u32, tolerance: f64) -> Result<()> {
    let stats = Arc::new(Stats::default());
    let mut reference = None;
    let t0 = Instant::now();
    let mut samples = Vec::new();
    for cycle in 0..cycles {
        let room = format!("churn-{}-{cycle}", std::process::id());
        let mut clients = Vec::new();
        let mut senders = Vec::new();
        let shape = Shape {
            rooms: 1,
            publishers: group,
            subscribers: 0,
            video_kbps: 300,
            fps: 15,
            warmup: 0,
            duration: 0,
            simulcast: false,
            feedback: false,
            remb: false,
        };
        for i in 0..group {
            let ssrc = SSRC.fetch_add(SSRCS_PER_CLIENT, Ordering::Relaxed);
            let role = Role {
                publish: true,
                ..Role::default()
            };
            let c = Client::join(server, &room, &format!("c{i}"), role, ssrc, stats.clone())
                .await
                .with_context(|| format!("cycle {cycle}: join"))?;
            c.connected(Duration::from_secs(10))
                .await
                .with_context(|| format!("cycle {cycle}"))?;
            senders.push(spawn_sender(&c, i * 2, &shape, stats.clone()));
            clients.push(c);
        }
        // Media flows both ways for a moment (subscriptions, writer and feedback tasks exist).
        tokio::time::sleep(Duration::from_millis(300)).await;
        for s in senders {
            s.abort();
        }
        for c in clients {
            c.leave().await;
        }
        if cycle == cycles / 10 {
            // Steady state reached (allocator arenas, pools warmed up): the reference.
            tokio::time::sleep(Duration::from_millis(500)).await;
            reference = Some(procfs::rss_kib(pid)?);
        }
        if cycle % 50 == 0 {
            let rss = procfs::rss_kib(pid)?;
            samples.push((cycle, rss));
            eprintln!(
                "churn: cycle {cycle}/{cycles}, server RSS {:.1} MiB, {:.0} s",
                rss as f64 / 1024.0,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    // Give the server a moment to finish teardown, then check.
    let mut rooms = Value::Null;
    for _ in 0..50 {
        rooms = http_get_json(server, "/api/rooms").await?;
        if rooms["participants"].as_u64() == Some(0)
            && rooms["rooms"].as_array().is_some_and(|r| r.is_empty())
            && rooms["tasks"].as_i64() == Some(0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = procfs::rss_kib(pid)?;
    let reference = reference.context("no reference sample")?;
    let change = (end as f64 / reference as f64 - 1.0) * 100.0;
    let out = json!({
        "cycles": cycles, "group": group, "seconds": t0.elapsed().as_secs(),
        "rss_reference_mib": reference as f64 / 1024.0, "rss_end_mib": end as f64 / 1024.0,
        "rss_change_pct": (change * 10.0).round() / 10.0,
        "samples_mib": samples.iter().map(|(c, r)| json!([c, *r as f64 / 1024.0])).collect::<Vec<_>>(),
        "rooms_after": rooms["rooms"], "participants_after": rooms["participants"],
        "joins": rooms["joins"], "leaves": rooms["leaves"], "media_address": rooms["media_address"],
        "sfu_tasks_after": rooms["tasks"], "sfu_tasks_by_kind": rooms["tasks_by_kind"],
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if rooms["participants"].as_u64() != Some(0)
        || !rooms["rooms"].as_array().is_some_and(|r| r.is_empty())
    {
        bail!("rooms or participants left behind: {}", rooms["rooms"]);
    }
    if rooms["tasks"].as_i64() != Some(0) {
        bail!("media-plane tasks left behind: {}", rooms["tasks"]);
    }
    if change.abs() > tolerance {
        bail!("server RSS changed by {change:.1} % (allowed ±{tolerance} %)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(publishers: u32, subscribers: u32, simulcast: bool) -> Shape {
        Shape {
            rooms: 1,
            publishers,
            subscribers,
            video_kbps: 1000,
            fps: 30,
            warmup: 0,
            duration: 0,
            simulcast,
            feedback: false,
            remb: false,
        }
    }

    #[test]
    fn without_simulcast_everybody_else_receives_the_one_video_stream() {
        let r = shape(2, 8, false).receivers();
        assert_eq!((r.audio, r.video), (9, [9, 0, 0]));
        assert_eq!(shape(2, 8, false).subscriber_wants(0), None);
    }

    #[test]
    fn with_simulcast_subscribers_spread_over_the_layers_and_publishers_take_the_top() {
        let s = shape(2, 8, true);
        let wants: Vec<_> = (0..4).map(|i| s.subscriber_wants(i).unwrap()).collect();
        assert_eq!(wants, ["low", "medium", "high", "low"]);
        let r = s.receivers();
        // Subscribers 0, 3, 6 low; 1, 4, 7 medium; 2, 5 high, with the other publisher.
        assert_eq!((r.audio, r.video), (9, [3, 3, 3]));
        assert_eq!(r.video.iter().sum::<u64>(), r.audio, "one layer each");
    }
}
