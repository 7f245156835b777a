//! `GET /metrics`: the Prometheus exposition of the whole server, for an operator's
//! Prometheus and Grafana (docs/metrics.md, `docs/grafana/rtc-call.json`): 1-to-1 signaling,
//! the SFU and the embedded TURN relay (whose own `turn_*` families are appended as the
//! standalone relay serves them). Behind the operator token like `/api/rooms`: it counts
//! rooms and traffic, which is nobody else's business.
//!
//! Room and participant names never become labels: a label per room would let one client
//! grow the exposition (and the operator's time-series database) without bound.

use std::{fmt::Display, fmt::Write, sync::Arc, time::SystemTime};

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use sfu::{Quality, RoomsReport, Sfu};
use turn_relay::MetricsSource;

use crate::live::{LiveRooms, LiveStats};
use crate::signaling::{socketio::HubStats, Hub};

/// What `/metrics` reads from.
#[derive(Clone)]
pub struct Metrics {
    pub hub: Arc<Hub>,
    pub sfu: Arc<Sfu>,
    /// The embedded relay, if it runs in this process.
    pub turn: Option<MetricsSource>,
    pub live: Arc<LiveRooms>,
    pub started: SystemTime,
}

/// The `/metrics` route (the access guard asks for the operator token).
pub fn routes(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(serve))
        .with_state(metrics)
}

async fn serve(State(metrics): State<Metrics>) -> Response {
    let sfu = metrics.sfu.report().await;
    let mut text = render(&metrics.hub.stats(), &sfu, metrics.started);
    text.push_str(&render_live(metrics.live.stats()));
    if let Some(turn) = &metrics.turn {
        text.push_str(&turn.render());
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// The exposition of signaling and SFU figures.
pub fn render(hub: &HubStats, sfu: &RoomsReport, started: SystemTime) -> String {
    let mut out = Exposition::default();
    let start = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    out.single(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since the Unix epoch, in seconds.",
        start,
    );

    out.single(
        "signaling_clients",
        Kind::Gauge,
        "Connected 1-to-1 signaling clients.",
        hub.clients,
    );
    out.single(
        "signaling_rooms",
        Kind::Gauge,
        "1-to-1 rooms with at least one member.",
        hub.rooms,
    );
    out.single(
        "signaling_calls",
        Kind::Gauge,
        "1-to-1 rooms with two members (a call, or one being set up).",
        hub.calls,
    );

    out.single("sfu_rooms", Kind::Gauge, "SFU rooms.", sfu.rooms.len());
    out.single(
        "sfu_participants",
        Kind::Gauge,
        "Participants in SFU rooms.",
        sfu.participants,
    );
    out.family(
        "sfu_participants_by_quality",
        Kind::Gauge,
        "Participants in SFU rooms by connection quality (unknown: before their first statistics interval).",
    );
    let participants = || sfu.rooms.iter().flat_map(|room| &room.participants);
    for (label, quality) in [
        ("good", Some(Quality::Good)),
        ("fair", Some(Quality::Fair)),
        ("poor", Some(Quality::Poor)),
        ("unknown", None),
    ] {
        let count = participants().filter(|p| p.quality == quality).count();
        out.sample("sfu_participants_by_quality", &[("quality", label)], count);
    }
    out.single(
        "sfu_receive_bitrate_bps",
        Kind::Gauge,
        "Media the SFU receives from participants, in bits per second.",
        participants().map(|p| p.bitrate_in_bps).sum::<u64>(),
    );
    out.single(
        "sfu_send_bitrate_bps",
        Kind::Gauge,
        "Media the SFU sends to participants, in bits per second.",
        participants().map(|p| p.bitrate_out_bps).sum::<u64>(),
    );
    let counters: [(&str, &str, u64); 7] = [
        (
            "sfu_joins_total",
            "Participants that joined an SFU room.",
            sfu.joins,
        ),
        (
            "sfu_leaves_total",
            "Participants that left an SFU room.",
            sfu.leaves,
        ),
        (
            "sfu_forwarded_packets_total",
            "RTP packets forwarded to subscribers.",
            sfu.forwarded_packets,
        ),
        (
            "sfu_forwarded_bytes_total",
            "Bytes of RTP packets forwarded to subscribers.",
            sfu.forwarded_bytes,
        ),
        (
            "sfu_dropped_packets_total",
            "Packets to participants the media socket refused (send buffer full).",
            sfu.dropped_packets,
        ),
        (
            "sfu_keyframe_requests_total",
            "Keyframe requests (PLI/FIR) sent to publishers, after throttling.",
            sfu.keyframe_requests_sent,
        ),
        (
            "sfu_ice_restarts_total",
            "ICE restarts the server started (a participant's path was lost, or it asked).",
            sfu.ice_restarts,
        ),
    ];
    for (name, help, value) in counters {
        out.single(name, Kind::Counter, help, value);
    }
    out.0
}

/// The exposition of live viewing figures (docs/live.md).
pub fn render_live(stats: LiveStats) -> String {
    let mut out = Exposition::default();
    out.single(
        "live_rooms",
        Kind::Gauge,
        "SFU rooms on air for live viewers (HLS).",
        stats.on_air,
    );
    out.single(
        "live_streams",
        Kind::Gauge,
        "Speakers' live streams being packaged.",
        stats.streams,
    );
    out.single(
        "live_ended_streams_total",
        Kind::Counter,
        "Live streams that ended (their speaker left, the room went off air, or they fell behind).",
        stats.ended,
    );
    out.0
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// Prometheus text format 0.0.4, written by hand as in `turn_relay::metrics`: a few lines
/// of text need no client library and its registry.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// Label values here are our own constants, so they need no escaping.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = write!(self.0, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use sfu::{ParticipantReport, RoomReport};

    use super::*;

    fn participant(quality: Option<Quality>, bitrate_in_bps: u64) -> ParticipantReport {
        ParticipantReport {
            id: "p00000000000a".parse().unwrap(),
            name: "ann".into(),
            seconds: 1,
            publishing: Vec::new(),
            subscriptions: 0,
            bitrate_in_bps,
            bitrate_out_bps: 1000,
            packets_in: 0,
            packets_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            packets_lost_inbound: 0,
            packets_lost_outbound: 0,
            rtt_ms: None,
            keyframes_requested: 0,
            keyframes_sent_upstream: 0,
            nacks_received: 0,
            dropped: 0,
            negotiations: 0,
            ice_restarts: 0,
            quality,
        }
    }

    /// Parses the exposition back: every sample line is `name{labels} value`, every family
    /// has HELP and TYPE before its samples, and no family appears twice.
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut typed = Vec::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(matches!(kind, "gauge" | "counter"), "{line}");
                assert!(!typed.contains(&name.to_owned()), "{name} twice");
                typed.push(name.to_owned());
            } else if !line.starts_with("# HELP ") {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                assert_eq!(typed.last().map(String::as_str), Some(name), "{line}");
                samples.insert(series.to_owned(), value.parse::<f64>().unwrap());
            }
        }
        samples
    }

    #[test]
    fn figures_of_signaling_and_rooms() {
        let hub = HubStats {
            clients: 5,
            rooms: 3,
            calls: 2,
        };
        let sfu = RoomsReport {
            rooms: vec![RoomReport {
                room: "a \"room\"\nname".into(),
                participants: vec![
                    participant(Some(Quality::Good), 300_000),
                    participant(Some(Quality::Poor), 200_000),
                    participant(None, 0),
                ],
            }],
            participants: 3,
            forwarded_packets: 1234,
            joins: 4,
            ..Default::default()
        };
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let text = render(&hub, &sfu, started);
        let samples = parse(&text);
        assert_eq!(samples["signaling_calls"], 2.0);
        assert_eq!(samples["signaling_clients"], 5.0);
        assert_eq!(samples["sfu_rooms"], 1.0);
        assert_eq!(samples["sfu_participants"], 3.0);
        assert_eq!(
            samples["sfu_participants_by_quality{quality=\"good\"}"],
            1.0
        );
        assert_eq!(
            samples["sfu_participants_by_quality{quality=\"fair\"}"],
            0.0
        );
        assert_eq!(
            samples["sfu_participants_by_quality{quality=\"poor\"}"],
            1.0
        );
        assert_eq!(
            samples["sfu_participants_by_quality{quality=\"unknown\"}"],
            1.0
        );
        assert_eq!(samples["sfu_receive_bitrate_bps"], 500_000.0);
        assert_eq!(samples["sfu_send_bitrate_bps"], 3000.0);
        assert_eq!(samples["sfu_forwarded_packets_total"], 1234.0);
        assert_eq!(samples["sfu_joins_total"], 4.0);
        assert_eq!(samples["process_start_time_seconds"], 1.7e9);
        assert!(
            !text.contains("\"room\"") && !text.contains("ann"),
            "no room or participant names in the exposition"
        );
        assert!(text.ends_with('\n'));
    }
}
