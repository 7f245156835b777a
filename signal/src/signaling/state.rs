//! The per-client signaling state machine of the course's 1-to-1 system (seed 002):
//! `init/leaved → joined → joined_conn ⇄ joined_unbind`.
//!
//! One enum, one transition function, no I/O: the caller asks the room what a join would
//! do, feeds the verdict in, and applies the returned state only on `Ok`.

use serde::Serialize;

use super::error::SignalError;

/// Where one client stands. The string form is what the protocol and the web page show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    /// Not in a room ("init/leaved" in the course).
    Leaved,
    /// In a room, alone since joining.
    Joined,
    /// In a room together with at least one peer: messages can be relayed.
    JoinedConn,
    /// In a room whose peer has left; waiting for a new one.
    JoinedUnbind,
}

impl ClientState {
    pub const ALL: [ClientState; 4] = [
        ClientState::Leaved,
        ClientState::Joined,
        ClientState::JoinedConn,
        ClientState::JoinedUnbind,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Leaved => "leaved",
            ClientState::Joined => "joined",
            ClientState::JoinedConn => "joined_conn",
            ClientState::JoinedUnbind => "joined_unbind",
        }
    }

    pub fn in_room(self) -> bool {
        self != ClientState::Leaved
    }
}

/// What a room would do with a join, decided by the room registry under the same lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomVerdict {
    /// The room is empty: the joiner will be alone.
    Alone,
    /// The room has members and space left.
    WithPeers,
    /// The room is at capacity: the joiner is refused.
    Full,
}

/// Everything that can move a client's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The client asks to join; the room's verdict is already known.
    Join(RoomVerdict),
    /// The client asks to leave its room.
    Leave,
    /// The client wants to relay a message to its peer(s).
    Relay,
    /// Another client joined this client's room.
    PeerJoined,
    /// Another client left this client's room; `peers_left` members other than this client remain.
    PeerLeft { peers_left: usize },
}

/// The single transition function. `Err` means the input is invalid in `state` and must
/// have no effect at all.
pub fn transition(state: ClientState, input: Input) -> Result<ClientState, SignalError> {
    use ClientState::*;
    match (state, input) {
        (Leaved, Input::Join(RoomVerdict::Alone)) => Ok(Joined),
        (Leaved, Input::Join(RoomVerdict::WithPeers)) => Ok(JoinedConn),
        (Leaved, Input::Join(RoomVerdict::Full)) => Ok(Leaved),
        (Joined | JoinedConn | JoinedUnbind, Input::Join(_)) => Err(SignalError::AlreadyJoined),

        (Leaved, Input::Leave) => Err(SignalError::NotInRoom),
        (Joined | JoinedConn | JoinedUnbind, Input::Leave) => Ok(Leaved),

        (JoinedConn, Input::Relay) => Ok(JoinedConn),
        (Joined | JoinedUnbind, Input::Relay) => Err(SignalError::NoPeer),
        (Leaved, Input::Relay) => Err(SignalError::NotInRoom),

        (Joined | JoinedConn | JoinedUnbind, Input::PeerJoined) => Ok(JoinedConn),
        (Leaved, Input::PeerJoined) => Err(SignalError::NotInRoom),

        (JoinedConn, Input::PeerLeft { peers_left: 0 }) => Ok(JoinedUnbind),
        (JoinedConn, Input::PeerLeft { .. }) => Ok(JoinedConn),
        // A peer can only leave a room that had one; being alone already, nothing changes.
        (Joined | JoinedUnbind, Input::PeerLeft { .. }) => Ok(state),
        (Leaved, Input::PeerLeft { .. }) => Err(SignalError::NotInRoom),
    }
}

#[cfg(test)]
mod tests {
    use super::ClientState::*;
    use super::*;

    /// Every (state, input) pair, with the expected outcome: the table is the spec.
    #[test]
    fn every_state_input_pair() {
        let inputs = [
            Input::Join(RoomVerdict::Alone),
            Input::Join(RoomVerdict::WithPeers),
            Input::Join(RoomVerdict::Full),
            Input::Leave,
            Input::Relay,
            Input::PeerJoined,
            Input::PeerLeft { peers_left: 0 },
            Input::PeerLeft { peers_left: 1 },
        ];
        let expected = |state: ClientState, input: Input| -> Result<ClientState, SignalError> {
            match input {
                Input::Join(verdict) if state == Leaved => Ok(match verdict {
                    RoomVerdict::Alone => Joined,
                    RoomVerdict::WithPeers => JoinedConn,
                    RoomVerdict::Full => Leaved,
                }),
                Input::Join(_) => Err(SignalError::AlreadyJoined),
                _ if state == Leaved => Err(SignalError::NotInRoom),
                Input::Leave => Ok(Leaved),
                Input::Relay if state == JoinedConn => Ok(JoinedConn),
                Input::Relay => Err(SignalError::NoPeer),
                Input::PeerJoined => Ok(JoinedConn),
                Input::PeerLeft { peers_left } if state == JoinedConn => Ok(if peers_left == 0 {
                    JoinedUnbind
                } else {
                    JoinedConn
                }),
                Input::PeerLeft { .. } => Ok(state),
            }
        };
        let mut checked = 0;
        for state in ClientState::ALL {
            for input in inputs {
                assert_eq!(
                    transition(state, input),
                    expected(state, input),
                    "{state:?} + {input:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 32);
    }

    #[test]
    fn the_course_call_cycle() {
        // A joins alone, B arrives, B leaves, C arrives, A leaves.
        let mut a = Leaved;
        a = transition(a, Input::Join(RoomVerdict::Alone)).unwrap();
        assert_eq!(a, Joined);
        assert_eq!(transition(a, Input::Relay), Err(SignalError::NoPeer));
        a = transition(a, Input::PeerJoined).unwrap();
        assert_eq!(a, JoinedConn);
        a = transition(a, Input::Relay).unwrap();
        a = transition(a, Input::PeerLeft { peers_left: 0 }).unwrap();
        assert_eq!(a, JoinedUnbind);
        assert_eq!(transition(a, Input::Relay), Err(SignalError::NoPeer));
        a = transition(a, Input::PeerJoined).unwrap();
        assert_eq!(a, JoinedConn);
        a = transition(a, Input::Leave).unwrap();
        assert_eq!(a, Leaved);
    }

    #[test]
    fn state_names_match_the_protocol() {
        let names: Vec<_> = ClientState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["leaved", "joined", "joined_conn", "joined_unbind"]);
        assert_eq!(
            serde_json::to_string(&JoinedUnbind).unwrap(),
            "\"joined_unbind\""
        );
    }
}
