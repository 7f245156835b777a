//! Moderation: a moderator removes a participant, mutes its audio for the room, or ends the
//! room. Who may is decided here for the room-host rule (without tokens the room's
//! longest-present member moderates); a token's grant is checked by the caller.
//!
//! Enforced in the media plane, not asked of the browsers: a removed participant's
//! connection is closed at once, and a muted participant's audio is dropped on arrival
//! (`forward.rs`), so a page that ignores what it is told changes nothing.

use std::time::Instant;

use super::SfuCore;
use crate::{
    api::{Moderation, ModeratorRight, ParticipantEvent, SfuError},
    ids::{ParticipantId, ParticipantSlot},
};

impl SfuCore {
    pub(super) fn moderate(
        &mut self,
        now: Instant,
        by: ParticipantId,
        action: Moderation,
        right: ModeratorRight,
    ) -> Result<(), SfuError> {
        let moderator = self.slot(by)?;
        let room = self.participants[moderator.0].room.clone();
        if right == ModeratorRight::IfHost && self.rooms.host(&room) != Some(moderator) {
            return Err(SfuError::NotModerator);
        }
        let name = self.participants[moderator.0].name.clone();
        let in_room = |core: &Self, id: ParticipantId| {
            core.slot(id)
                .ok()
                .filter(|slot| core.participants[slot.0].room == room)
                .ok_or(SfuError::NotInRoom(id))
        };
        match action {
            Moderation::Remove(id) => {
                let target = in_room(self, id)?;
                tracing::info!(parent: &self.participants[target.0].span, by = %name, "removed by a moderator");
                self.remove(now, target, &name, false);
            }
            Moderation::Mute(id, muted) => {
                let target = in_room(self, id)?;
                let participant = &mut self.participants[target.0];
                if participant.muted != muted {
                    participant.muted = muted;
                    tracing::info!(parent: &participant.span, by = %name, muted, "audio muted by a moderator");
                    self.broadcast_participants(&room);
                }
            }
            Moderation::EndRoom => {
                tracing::info!(%room, by = %name, "room ended by a moderator");
                for slot in self.rooms.members(&room).to_vec() {
                    self.remove(now, slot, &name, true);
                }
            }
        }
        Ok(())
    }

    /// Tells `slot`'s signaling why, then takes it out of the room (its signaling's own
    /// leave that follows finds nothing to do).
    fn remove(&mut self, now: Instant, slot: ParticipantSlot, by: &str, ended: bool) {
        let id = self.participants[slot.0].id;
        self.emit(
            id,
            ParticipantEvent::Removed {
                by: by.to_owned(),
                ended,
            },
        );
        self.leave(now, slot);
    }
}
