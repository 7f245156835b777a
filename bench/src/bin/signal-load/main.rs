//! `signal-load`: socket.io signaling load client for the `signal` vs Node benchmark
//! (bench/signal/run.sh). N clients in rooms of two: connect, join (timed), then ping-pong
//! candidate relays at a fixed per-client rate for a fixed time, sampling the server's CPU
//! and memory from /proc at the phase boundaries. Prints one JSON object on stdout and a
//! human summary on stderr.

mod pair;
mod procfs;
mod sio;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use pair::{Config, Errors, Report, Shared};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser, Debug)]
#[command(about = "socket.io signaling load client (rooms of 2, ping-pong candidate relays)")]
struct Args {
    /// Server address (loopback only: this tool is for local benchmarks).
    #[arg(long, default_value = "127.0.0.1:3000")]
    server: SocketAddr,
    /// Number of clients (even; they form clients/2 rooms).
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Relay phase length, seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Stop each room after this many relay rounds (default: run for --duration).
    #[arg(long)]
    rounds: Option<u64>,
    /// Messages per second sent by each client (the server allows 64/s sustained).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Rooms starting their join per second (spreads the join phase).
    #[arg(long, default_value_t = 1000.0)]
    join_rate: f64,
    /// Concurrent connection handshakes.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds to wait for any expected reply before counting an error.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Room capacity the server announces in `joined`.
    #[arg(long, default_value_t = 2)]
    capacity: u64,
    /// PID of the server process, to sample its CPU and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server under test, copied into the output.
    #[arg(long, default_value = "server")]
    label: String,
    /// Room name prefix; defaults to one unique to this run.
    #[arg(long)]
    room_prefix: Option<String>,
    /// Tokio worker threads for the client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.clients >= 2 && args.clients % 2 == 0,
        "--clients must be even and >= 2"
    );
    ensure!(
        args.server.ip().is_loopback(),
        "--server must be a loopback address"
    );
    ensure!(
        args.rate > 0.0 && args.join_rate > 0.0 && args.duration > 0.0 && args.timeout > 0.0,
        "rates, --duration and --timeout must be positive"
    );
    ensure!(args.threads >= 1, "--threads must be >= 1");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Waits until every room task has reported arriving at checkpoint `k`.
async fn arrivals(
    rx: &mut mpsc::UnboundedReceiver<u8>,
    k: u8,
    n: usize,
    limit: Duration,
) -> Result<()> {
    let wait = async {
        for _ in 0..n {
            match rx.recv().await {
                Some(got) if got == k => {}
                Some(got) => bail!("room task at checkpoint {got}, expected {k}"),
                None => bail!("room tasks vanished before checkpoint {k}"),
            }
        }
        Ok(())
    };
    tokio::time::timeout(limit, wait)
        .await
        .with_context(|| format!("checkpoint {k} not reached within {limit:?}"))?
}

/// Nearest-rank percentile in milliseconds.
fn pct_ms(sorted: &[u32], p: f64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    let us = sorted[rank.min(sorted.len()) - 1];
    json!(f64::from(us) / 1000.0)
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn merge(reports: Vec<Report>) -> Report {
    let mut all = Report::default();
    for r in reports {
        all.connect_us.extend(r.connect_us);
        all.join_us.extend(r.join_us);
        all.rtt_us.extend(r.rtt_us);
        all.relayed += r.relayed;
        all.rounds += r.rounds;
        all.late += r.late;
        let (e, into) = (r.errors, &mut all.errors);
        into.connect += e.connect;
        into.disconnect += e.disconnect;
        into.join_missing += e.join_missing;
        into.relay_timeout += e.relay_timeout;
        into.unexpected += e.unexpected;
        for (code, n) in e.signal_error {
            *into.signal_error.entry(code).or_default() += n;
        }
        for s in e.samples {
            if into.samples.len() < 20 {
                into.samples.push(s);
            }
        }
    }
    all.connect_us.sort_unstable();
    all.join_us.sort_unstable();
    all.rtt_us.sort_unstable();
    all
}

fn errors_json(e: &Errors) -> Value {
    json!({
        "total": e.total(),
        "connect": e.connect,
        "disconnect": e.disconnect,
        "join_missing": e.join_missing,
        "relay_timeout": e.relay_timeout,
        "signal_error": e.signal_error,
        "unexpected": e.unexpected,
        "samples": e.samples,
    })
}

async fn run(args: Args) -> Result<()> {
    let pairs = args.clients / 2;
    let timeout = Duration::from_secs_f64(args.timeout);
    let duration = Duration::from_secs_f64(args.duration);
    let join_interval = Duration::from_secs_f64(1.0 / args.join_rate);
    let (arr_tx, mut arr_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(0u8);
    let shared = Arc::new(Shared {
        cfg: Config {
            addr: args.server,
            url: format!("ws://{}/socket.io/?EIO=4&transport=websocket", args.server),
            // tungstenite allocates its read buffer eagerly (128 KiB by default); signaling
            // frames are a few hundred bytes, and thousands of clients share this process.
            ws: WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0),
            pairs,
            room_prefix: args
                .room_prefix
                .clone()
                .unwrap_or_else(|| format!("bench-{}-", std::process::id())),
            capacity: args.capacity,
            join_interval,
            period: Duration::from_secs_f64(1.0 / args.rate),
            duration,
            rounds: args.rounds,
            timeout,
        },
        connect_gate: Semaphore::new(args.connect_concurrency.max(1)),
        arrivals: arr_tx,
    });
    let server = args.server_pid.map(|p| p.to_string());
    let server_cpu = || server.as_deref().map(procfs::cpu).transpose();
    let server_mem = || server.as_deref().map(procfs::mem).transpose();
    let mem_base = server_mem()?;

    let t0 = Instant::now();
    let tasks: Vec<_> = (0..pairs)
        .map(|i| tokio::spawn(pair::run(i, shared.clone(), go_rx.clone())))
        .collect();
    drop(go_rx);

    // Phase limits: each room's own waits are bounded by --timeout, so these only fire
    // if the tool itself is broken; they keep a run bounded in time regardless.
    let slack = timeout * 3 + Duration::from_secs(10);
    let connect_limit = timeout * 2 * (pairs / args.connect_concurrency.max(1) + 1) as u32 + slack;
    arrivals(&mut arr_rx, 1, pairs, connect_limit).await?;
    let connect_time = t0.elapsed();

    let mem_connected = server_mem()?;
    let cpu_j0 = server_cpu()?;
    let t_join = Instant::now();
    let _ = go_tx.send(1);
    arrivals(&mut arr_rx, 2, pairs, join_interval * pairs as u32 + slack).await?;
    let join_time = t_join.elapsed();
    let cpu_j1 = server_cpu()?;
    let mem_joined = server_mem()?;

    let machine0 = procfs::machine()?;
    let client0 = procfs::cpu("self")?;
    let cpu_r0 = server_cpu()?;
    let t_relay = Instant::now();
    let _ = go_tx.send(2);
    arrivals(&mut arr_rx, 3, pairs, duration + slack).await?;
    let relay_time = t_relay.elapsed();
    let cpu_r1 = server_cpu()?;
    let client = procfs::cpu("self")?.since(client0);
    let machine1 = procfs::machine()?;
    let mem_peak = server_mem()?;

    let _ = go_tx.send(3);
    let mut reports = Vec::with_capacity(pairs);
    for t in tasks {
        reports.push(t.await.context("room task panicked")?);
    }
    let r = merge(reports);

    let relay_s = relay_time.as_secs_f64();
    let msgs_per_s = r.relayed as f64 / relay_s;
    let per_msg = |us: u64| {
        if r.relayed == 0 {
            Value::Null
        } else {
            json!((us as f64 / r.relayed as f64 * 100.0).round() / 100.0)
        }
    };
    let server_json = match (
        (cpu_j0, cpu_j1, cpu_r0, cpu_r1),
        (mem_base, mem_connected, mem_joined, mem_peak),
    ) {
        (
            (Some(j0), Some(j1), Some(r0), Some(r1)),
            (Some(base), Some(connected), Some(joined), Some(peak)),
        ) => {
            let relay = r1.since(r0);
            let join = j1.since(j0);
            json!({
                "pid": args.server_pid,
                "cpu_relay_us": relay.stat_us,
                "cpu_relay_sched_us": relay.sched_us,
                "cpu_us_per_msg": per_msg(relay.stat_us),
                "cpu_us_per_msg_sched": per_msg(relay.sched_us),
                "cpu_join_us": join.stat_us,
                "rss_base_kib": base.rss_kib,
                // Where memory grows: connection state vs room state vs relay traffic.
                "rss_connected_kib": connected.rss_kib,
                "rss_joined_kib": joined.rss_kib,
                "rss_end_kib": peak.rss_kib,
                "hwm_kib": peak.hwm_kib,
                // Peak above the idle process, spread over the connections it served.
                "rss_per_conn_kib": ((peak.hwm_kib.saturating_sub(base.rss_kib)) as f64
                    / args.clients as f64 * 100.0).round() / 100.0,
            })
        }
        _ => Value::Null,
    };
    // CPU used by everything except this client and the server during the relay phase,
    // in percent of the whole machine: the noise this run was measured under.
    let others_pct = {
        let total = machine1.total_us.saturating_sub(machine0.total_us).max(1);
        let busy = machine1.busy_us.saturating_sub(machine0.busy_us);
        let server_us = cpu_r0.zip(cpu_r1).map_or(0, |(a, b)| b.since(a).sched_us);
        let others = busy.saturating_sub(client.sched_us + server_us);
        (others as f64 * 1000.0 / total as f64).round() / 10.0
    };
    let out = json!({
        "label": args.label,
        "clients": args.clients,
        "rooms": pairs,
        "rate_per_client": args.rate,
        "connect": {
            "ok": r.connect_us.len(),
            "secs": secs(connect_time),
            "p50_ms": pct_ms(&r.connect_us, 50.0),
            "p99_ms": pct_ms(&r.connect_us, 99.0),
        },
        "join": {
            "samples": r.join_us.len(),
            "secs": secs(join_time),
            "p50_ms": pct_ms(&r.join_us, 50.0),
            "p99_ms": pct_ms(&r.join_us, 99.0),
        },
        "relay": {
            "secs": secs(relay_time),
            "rounds": r.rounds,
            "relayed": r.relayed,
            "msgs_per_s": (msgs_per_s * 10.0).round() / 10.0,
            "rtt_samples": r.rtt_us.len(),
            "rtt_p50_ms": pct_ms(&r.rtt_us, 50.0),
            "rtt_p99_ms": pct_ms(&r.rtt_us, 99.0),
            "late": r.late,
        },
        "errors": errors_json(&r.errors),
        "server": server_json,
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "others_busy_pct": others_pct,
        },
        "client": {
            "threads": args.threads,
            "cpu_relay_us": client.sched_us,
            "cpu_us_per_msg": per_msg(client.sched_us),
        },
    });
    println!("{out}");
    eprintln!(
        "{}: {} clients, join p50/p99 {}/{} ms, {} relayed in {:.1}s = {:.0} msg/s, rtt p50/p99 {}/{} ms, server {} us/msg, peak RSS {} KiB, errors {}, others {}% busy",
        args.label,
        args.clients,
        out["join"]["p50_ms"],
        out["join"]["p99_ms"],
        r.relayed,
        relay_s,
        msgs_per_s,
        out["relay"]["rtt_p50_ms"],
        out["relay"]["rtt_p99_ms"],
        out["server"]["cpu_us_per_msg"],
        out["server"]["hwm_kib"],
        r.errors.total(),
        others_pct,
    );
    for s in &r.errors.samples {
        eprintln!("  error: {s}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(pct_ms(&v, 50.0), json!(50.0));
        assert_eq!(pct_ms(&v, 99.0), json!(99.0));
        assert_eq!(pct_ms(&[1500], 99.0), json!(1.5));
        assert_eq!(pct_ms(&[], 50.0), Value::Null);
    }
}
