//! `GET /api/rooms` from the core's state.

use std::{collections::BTreeMap, time::Instant};

use super::SfuCore;
use crate::{
    ids::ParticipantSlot,
    report::{ParticipantReport, RoomReport, RoomsReport},
};

impl SfuCore {
    pub(super) fn report(&mut self, now: Instant) -> RoomsReport {
        let mut tasks_by_kind = BTreeMap::new();
        if !self.participants.is_empty() {
            tasks_by_kind.insert("rtc".to_owned(), self.participants.len() as i64);
        }
        let updates = self
            .participants
            .iter()
            .filter(|(_, p)| p.negotiation.is_pending())
            .count() as i64;
        if updates != 0 {
            tasks_by_kind.insert("update".to_owned(), updates);
        }
        let rooms: Vec<(String, Vec<ParticipantSlot>)> = self
            .rooms
            .sorted()
            .into_iter()
            .map(|(room, members)| (room.to_owned(), members.to_vec()))
            .collect();
        RoomsReport {
            rooms: rooms
                .into_iter()
                .map(|(room, members)| RoomReport {
                    room,
                    participants: members
                        .into_iter()
                        .map(|slot| self.participant_report(slot, now))
                        .collect(),
                })
                .collect(),
            participants: self.participants.len(),
            joins: self.totals.joins,
            leaves: self.totals.leaves,
            forwarded_packets: self.totals.forwarded_packets,
            forwarded_bytes: self.totals.forwarded_bytes,
            dropped_packets: self.totals.dropped_packets,
            keyframe_requests_sent: self.totals.keyframe_requests_sent,
            ice_restarts: self.totals.ice_restarts,
            media_address: self.local.to_string(),
            tasks: tasks_by_kind.values().sum(),
            tasks_by_kind,
            uptime_seconds: now.duration_since(self.started).as_secs(),
        }
    }

    fn participant_report(&mut self, slot: ParticipantSlot, now: Instant) -> ParticipantReport {
        let participant = &mut self.participants[slot.0];
        let stats = &mut participant.stats;
        let (since, bytes_in, bytes_out) =
            stats.rate_sample.unwrap_or((participant.joined_at, 0, 0));
        let elapsed = now.duration_since(since).as_secs_f64();
        let bitrate = |bytes: u64| {
            if elapsed > 0.0 {
                (bytes as f64 * 8.0 / elapsed) as u64
            } else {
                0
            }
        };
        let (bitrate_in, bitrate_out) = (
            bitrate(stats.bytes_in - bytes_in),
            bitrate(stats.bytes_out - bytes_out),
        );
        stats.rate_sample = Some((now, stats.bytes_in, stats.bytes_out));
        let publications: Vec<_> = participant
            .publications
            .iter()
            .map(|p| &self.publications[p.0])
            .collect();
        ParticipantReport {
            id: participant.id,
            name: participant.name.clone(),
            seconds: now.duration_since(participant.joined_at).as_secs(),
            publishing: publications.iter().map(|p| p.kind).collect(),
            subscriptions: participant
                .subscriptions
                .iter()
                .filter(|(_, s)| s.is_open())
                .count(),
            bitrate_in_bps: bitrate_in,
            bitrate_out_bps: bitrate_out,
            packets_in: stats.packets_in,
            packets_out: stats.packets_out,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            packets_lost_inbound: publications.iter().map(|p| p.layers.lost()).sum(),
            packets_lost_outbound: stats.lost_outbound.values().sum::<u64>() as i64,
            rtt_ms: stats.rtt_ms,
            keyframes_requested: stats.keyframes_requested,
            keyframes_sent_upstream: publications.iter().map(|p| p.layers.keyframes_sent()).sum(),
            nacks_received: stats.nacks.values().sum(),
            dropped: stats.dropped,
            negotiations: participant.negotiation.rounds,
            ice_restarts: stats.ice_restarts,
            quality: participant.quality.reported(),
        }
    }
}
