//! Room membership (no I/O): which participants share a room, in joining order.

use std::collections::{HashMap, HashSet};

use crate::{
    api::{SfuError, Speaker},
    ids::ParticipantSlot,
};

/// Two digests compared in constant time: how long it takes says nothing of where they
/// differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Default)]
pub struct Rooms {
    members: HashMap<String, Vec<ParticipantSlot>>,
    /// Live rooms (H.264 video), as their first joiner made them.
    live: HashSet<String>,
    /// Rooms with a passcode (its digest), as their first joiner set it.
    passcodes: HashMap<String, [u8; 32]>,
    /// The speakers last announced to each room, loudest first.
    speakers: HashMap<String, Vec<Speaker>>,
}

impl Rooms {
    pub fn size(&self, room: &str) -> usize {
        self.members.get(room).map_or(0, Vec::len)
    }

    /// Whether a joiner giving `passcode` may enter `room`: any joiner of a room without
    /// one (a new room takes it at [`Rooms::add`]), only the same passcode otherwise.
    pub fn admits(&self, room: &str, passcode: Option<&[u8; 32]>) -> Result<(), SfuError> {
        match (self.passcodes.get(room), passcode) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(SfuError::PasscodeRequired),
            (Some(set), Some(given)) if same_digest(set, given) => Ok(()),
            (Some(_), Some(_)) => Err(SfuError::WrongPasscode),
        }
    }

    /// Adds `slot`; a new room is live if `live` and has `passcode` if one is given (an
    /// existing one stays what it is).
    pub fn add(
        &mut self,
        room: &str,
        slot: ParticipantSlot,
        live: bool,
        passcode: Option<[u8; 32]>,
    ) {
        let members = self.members.entry(room.to_owned()).or_default();
        if members.is_empty() {
            if live {
                self.live.insert(room.to_owned());
            }
            if let Some(passcode) = passcode {
                self.passcodes.insert(room.to_owned(), passcode);
            }
        }
        members.push(slot);
    }

    /// Whether `room` is live (H.264 video), or would be if `live` made it now.
    pub fn is_live(&self, room: &str, live: bool) -> bool {
        match self.members.contains_key(room) {
            true => self.live.contains(room),
            false => live,
        }
    }

    /// Removes `slot`; an empty room is forgotten.
    pub fn remove(&mut self, room: &str, slot: ParticipantSlot) {
        if let Some(members) = self.members.get_mut(room) {
            members.retain(|s| *s != slot);
            if members.is_empty() {
                self.members.remove(room);
                self.speakers.remove(room);
                self.live.remove(room);
                self.passcodes.remove(room);
            }
        }
    }

    /// The room's longest-present member: without tokens, the one who moderates it.
    pub fn host(&self, room: &str) -> Option<ParticipantSlot> {
        self.members(room).first().copied()
    }

    pub fn members(&self, room: &str) -> &[ParticipantSlot] {
        self.members.get(room).map_or(&[], Vec::as_slice)
    }

    /// Rooms by name, for reports.
    pub fn sorted(&self) -> Vec<(&str, &[ParticipantSlot])> {
        let mut rooms: Vec<_> = self
            .members
            .iter()
            .map(|(name, members)| (name.as_str(), members.as_slice()))
            .collect();
        rooms.sort_by_key(|(name, _)| *name);
        rooms
    }

    /// Records `speakers` as the room's; `true` if who speaks, or in which order, differs
    /// from what was last announced (levels alone change every window).
    pub fn announce_speakers(&mut self, room: &str, speakers: &[Speaker]) -> bool {
        if !self.members.contains_key(room) {
            return false;
        }
        let last = self.speakers.entry(room.to_owned()).or_default();
        let same =
            last.len() == speakers.len() && last.iter().zip(speakers).all(|(a, b)| a.id == b.id);
        *last = speakers.to_vec();
        !same
    }

    /// The speakers last announced to `room` (what a newcomer is told).
    pub fn speakers(&self, room: &str) -> &[Speaker] {
        self.speakers.get(room).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_in_joining_order_and_empty_rooms_forgotten() {
        let mut rooms = Rooms::default();
        rooms.add("b", ParticipantSlot(2), false, None);
        rooms.add("a", ParticipantSlot(0), false, None);
        rooms.add("a", ParticipantSlot(1), false, None);
        assert_eq!(rooms.size("a"), 2);
        assert_eq!(
            rooms.members("a"),
            &[ParticipantSlot(0), ParticipantSlot(1)]
        );
        assert_eq!(
            rooms.sorted().iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["a", "b"]
        );
        rooms.remove("a", ParticipantSlot(0));
        rooms.remove("a", ParticipantSlot(1));
        rooms.remove("nowhere", ParticipantSlot(1));
        assert_eq!(rooms.size("a"), 0);
        assert_eq!(rooms.len(), 1);
        rooms.remove("b", ParticipantSlot(2));
        assert_eq!(rooms.len(), 0);
    }

    #[test]
    fn the_first_joiner_makes_a_room_live_until_it_empties() {
        let mut rooms = Rooms::default();
        assert!(rooms.is_live("a", true) && !rooms.is_live("a", false));
        rooms.add("a", ParticipantSlot(0), true, None);
        // Later joiners take the room as it is, whatever they ask.
        assert!(rooms.is_live("a", false));
        rooms.add("a", ParticipantSlot(1), false, None);
        rooms.add("b", ParticipantSlot(2), false, None);
        assert!(!rooms.is_live("b", true));
        rooms.remove("a", ParticipantSlot(0));
        assert!(rooms.is_live("a", false), "one member is left");
        rooms.remove("a", ParticipantSlot(1));
        assert!(!rooms.is_live("a", false), "an emptied room is forgotten");
    }

    #[test]
    fn the_first_joiner_sets_the_passcode_until_the_room_empties() {
        let mut rooms = Rooms::default();
        let (right, wrong) = ([7u8; 32], [8u8; 32]);
        assert!(
            rooms.admits("a", Some(&right)).is_ok(),
            "a new room takes any"
        );
        rooms.add("a", ParticipantSlot(0), false, Some(right));
        assert!(matches!(
            rooms.admits("a", None),
            Err(SfuError::PasscodeRequired)
        ));
        assert!(matches!(
            rooms.admits("a", Some(&wrong)),
            Err(SfuError::WrongPasscode)
        ));
        assert!(rooms.admits("a", Some(&right)).is_ok());
        // A later joiner cannot change it, nor set one on a room without.
        rooms.add("a", ParticipantSlot(1), false, Some(wrong));
        assert!(rooms.admits("a", Some(&right)).is_ok());
        rooms.add("b", ParticipantSlot(2), false, None);
        rooms.add("b", ParticipantSlot(3), false, Some(wrong));
        assert!(rooms.admits("b", None).is_ok());
        rooms.remove("a", ParticipantSlot(0));
        rooms.remove("a", ParticipantSlot(1));
        assert!(
            rooms.admits("a", None).is_ok(),
            "an emptied room is forgotten"
        );
    }
}
