//! Room membership and capacity. No I/O; the caller holds the lock that makes
//! "decide and join" atomic.

use std::{collections::HashMap, hash::Hash};

use super::{command::RoomName, error::SignalError, state::RoomVerdict};
use crate::passcode::{Passcode, PasscodeError};

#[derive(Debug)]
pub struct Rooms<Id> {
    capacity: usize,
    members: HashMap<RoomName, Vec<Id>>,
    /// Rooms with a passcode, as their first member set it; forgotten when they empty.
    passcodes: HashMap<RoomName, Passcode>,
}

impl<Id: Copy + Eq + Hash> Rooms<Id> {
    pub fn new(capacity: usize) -> Self {
        Rooms {
            capacity: capacity.max(1),
            members: HashMap::new(),
            passcodes: HashMap::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn verdict(&self, room: &RoomName) -> RoomVerdict {
        match self.members.get(room).map_or(0, Vec::len) {
            0 => RoomVerdict::Alone,
            n if n < self.capacity => RoomVerdict::WithPeers,
            _ => RoomVerdict::Full,
        }
    }

    /// Whether a joiner giving `passcode` may enter `room`: anyone into a room without one
    /// (a new room takes the passcode of its first member, [`Rooms::add`]), only the same
    /// passcode otherwise.
    pub fn admits(&self, room: &RoomName, passcode: Option<&Passcode>) -> Result<(), SignalError> {
        match (self.passcodes.get(room), passcode) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(PasscodeError::Required.into()),
            (Some(set), Some(given)) if set.admits(given) => Ok(()),
            (Some(_), Some(_)) => Err(PasscodeError::Wrong.into()),
        }
    }

    /// Adds `id` and returns the members that were already there; a new room takes
    /// `passcode`. Only call after [`Rooms::verdict`] said there is space and
    /// [`Rooms::admits`] let `id` in.
    pub fn add(&mut self, room: &RoomName, id: Id, passcode: Option<Passcode>) -> Vec<Id> {
        if !self.members.contains_key(room) {
            if let Some(passcode) = passcode {
                self.passcodes.insert(room.clone(), passcode);
            }
        }
        let members = self.members.entry(room.clone()).or_default();
        debug_assert!(members.len() < self.capacity && !members.contains(&id));
        let before = members.clone();
        members.push(id);
        before
    }

    /// Removes `id` and returns the members that remain. Empty rooms are dropped so that
    /// memory follows the live rooms only.
    pub fn remove(&mut self, room: &RoomName, id: Id) -> Vec<Id> {
        let Some(members) = self.members.get_mut(room) else {
            return Vec::new();
        };
        members.retain(|m| *m != id);
        if members.is_empty() {
            self.members.remove(room);
            self.passcodes.remove(room);
            return Vec::new();
        }
        members.clone()
    }

    pub fn members(&self, room: &RoomName) -> &[Id] {
        self.members.get(room).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Rooms with at least `n` members.
    pub fn count_with_at_least(&self, n: usize) -> usize {
        self.members.values().filter(|m| m.len() >= n).count()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn room(name: &str) -> RoomName {
        RoomName::parse(&json!(name)).unwrap()
    }

    #[test]
    fn capacity_two() {
        let mut rooms = Rooms::new(2);
        let r = room("111");
        assert_eq!(rooms.verdict(&r), RoomVerdict::Alone);
        assert_eq!(rooms.add(&r, 1, None), Vec::<u32>::new());
        assert_eq!(rooms.verdict(&r), RoomVerdict::WithPeers);
        assert_eq!(rooms.add(&r, 2, None), vec![1]);
        assert_eq!(rooms.verdict(&r), RoomVerdict::Full);
        assert_eq!(rooms.remove(&r, 1), vec![2]);
        assert_eq!(rooms.verdict(&r), RoomVerdict::WithPeers);
        assert_eq!(rooms.remove(&r, 2), Vec::<u32>::new());
        assert!(rooms.is_empty(), "empty rooms are dropped");
    }

    #[test]
    fn rooms_are_independent() {
        let mut rooms = Rooms::new(2);
        rooms.add(&room("a"), 1, None);
        rooms.add(&room("a"), 2, None);
        assert_eq!(rooms.verdict(&room("b")), RoomVerdict::Alone);
        assert_eq!(rooms.members(&room("a")), &[1, 2]);
        assert_eq!(rooms.members(&room("b")), &[] as &[u32]);
        assert_eq!(rooms.remove(&room("b"), 1), Vec::<u32>::new());
        assert_eq!(rooms.members(&room("a")), &[1, 2]);
    }

    #[test]
    fn larger_capacity() {
        let mut rooms = Rooms::new(3);
        let r = room("big");
        for id in 0..3 {
            assert_ne!(rooms.verdict(&r), RoomVerdict::Full);
            rooms.add(&r, id, None);
        }
        assert_eq!(rooms.verdict(&r), RoomVerdict::Full);
        assert_eq!(rooms.len(), 1);
    }
}
