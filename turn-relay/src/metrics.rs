//! Prometheus text exposition, written by hand (the format is a few lines of text;
//! a client library would bring a registry we do not need).

use crate::relay::Stats;
use std::fmt::Write;

pub fn render(stats: &Stats, allocations: usize) -> String {
    let mut s = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} {kind}");
        let _ = writeln!(s, "{name} {v}");
    };
    metric(
        "turn_allocations",
        "gauge",
        "Allocations currently held.",
        allocations as u64,
    );
    metric(
        "turn_allocations_created_total",
        "counter",
        "Allocations created.",
        stats.allocations_created,
    );
    metric(
        "turn_allocations_expired_total",
        "counter",
        "Allocations removed by expiry.",
        stats.allocations_expired,
    );
    metric(
        "turn_auth_failures_total",
        "counter",
        "Requests answered 401 or 438.",
        stats.auth_failures,
    );
    metric(
        "turn_rejected_peers_total",
        "counter",
        "Peer addresses refused by the peer policy.",
        stats.rejected_peers,
    );
    metric(
        "turn_quota_rejections_total",
        "counter",
        "Allocate requests refused by a quota (486).",
        stats.quota_rejections,
    );
    metric(
        "turn_packets_to_peer_total",
        "counter",
        "Packets relayed from clients to peers.",
        stats.packets_to_peer,
    );
    metric(
        "turn_bytes_to_peer_total",
        "counter",
        "Payload bytes relayed from clients to peers.",
        stats.bytes_to_peer,
    );
    metric(
        "turn_packets_to_client_total",
        "counter",
        "Packets relayed from peers to clients.",
        stats.packets_to_client,
    );
    metric(
        "turn_bytes_to_client_total",
        "counter",
        "Payload bytes relayed from peers to clients.",
        stats.bytes_to_client,
    );
    metric(
        "turn_dropped_no_permission_total",
        "counter",
        "Packets dropped for lack of a permission.",
        stats.dropped_no_permission,
    );
    metric(
        "turn_dropped_rate_limited_total",
        "counter",
        "Packets dropped by the max-bps cap.",
        stats.dropped_rate_limited,
    );
    metric(
        "turn_tcp_connections_total",
        "counter",
        "Peer connections of TCP allocations (RFC 6062) bound to a client data connection.",
        stats.tcp_connections_bound,
    );
    metric(
        "turn_malformed_total",
        "counter",
        "Packets that were not valid STUN or ChannelData.",
        stats.malformed,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let st = Stats {
            packets_to_peer: 7,
            ..Default::default()
        };
        let t = render(&st, 3);
        assert!(t.contains("# TYPE turn_allocations gauge\nturn_allocations 3\n"));
        assert!(t.contains("\nturn_packets_to_peer_total 7\n"));
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (name, v) = line.split_once(' ').unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            v.parse::<u64>().unwrap();
        }
    }
}
