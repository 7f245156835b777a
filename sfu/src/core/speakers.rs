//! Active speakers: every [`WINDOW`](crate::media::speaker::WINDOW) each audio publication's
//! speech level is scored (`media/speaker.rs`), each room's speakers are ranked, and the room
//! hears about it when the ranking changes (who, in which order), not every window; a
//! newcomer is told the current ranking when it joins.

use std::time::Instant;

use super::SfuCore;
use crate::{
    api::{ParticipantEvent, Speaker, TrackKind},
    media::speaker::{rank, WINDOW},
};

impl SfuCore {
    pub(super) fn rank_speakers(&mut self, now: Instant) {
        self.next_speakers = now + WINDOW;
        for (_, publication) in self.publications.iter_mut() {
            if publication.kind == TrackKind::Audio {
                publication.speaker.close_window();
            }
        }
        let rooms: Vec<String> = self
            .rooms
            .sorted()
            .into_iter()
            .map(|(room, _)| room.to_owned())
            .collect();
        for room in rooms {
            let levels = self.rooms.members(&room).iter().map(|slot| {
                let participant = &self.participants[slot.0];
                let level = participant
                    .publications
                    .iter()
                    .filter_map(|p| self.publications.get(p.0))
                    .filter(|p| p.kind == TrackKind::Audio)
                    .map(|p| p.speaker.level())
                    .fold(0.0f32, f32::max);
                (participant.id, level)
            });
            let speakers: Vec<Speaker> = rank(levels)
                .into_iter()
                .map(|(id, level)| Speaker { id, level })
                .collect();
            tracing::trace!(%room, ?speakers, "speakers");
            if self.rooms.announce_speakers(&room, &speakers) {
                for slot in self.rooms.members(&room).to_vec() {
                    let id = self.participants[slot.0].id;
                    self.emit(id, ParticipantEvent::Speakers(speakers.clone()));
                }
            }
        }
    }
}
