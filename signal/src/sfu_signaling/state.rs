//! The per-connection state machine of the `/sfu` namespace: `idle → joining → joined`.
//!
//! One enum, one transition function, no I/O, as for 1-to-1 rooms (`signaling::state`). The
//! participant id a `joining`/`joined` connection stands for is kept beside the state by
//! the core, which drops events about another id (a stale join answer, a failure of an
//! earlier session) before they get here.

use super::command::SfuSignalError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Not in a room.
    Idle,
    /// `join` sent to the media plane; its answer not back yet. Candidates are passed on
    /// (they reach the media plane after the join).
    Joining,
    /// In a room: the join answer was delivered.
    Joined,
}

impl ConnState {
    pub const ALL: [ConnState; 3] = [ConnState::Idle, ConnState::Joining, ConnState::Joined];
}

/// Everything that can move a connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The client asks to join (`join`).
    Join,
    /// The client sends an ICE candidate.
    Candidate,
    /// The client asks for an ICE restart (`restart`).
    Restart,
    /// The client says which video layer a tile needs (`layer`).
    Layer,
    /// The client starts or stops sharing its screen (`share`).
    Share,
    /// The client starts or stops the room's recording (`record`).
    Record,
    /// The client puts the room on or off air (`live`).
    Live,
    /// The client moderates the room (`moderate`).
    Moderate,
    /// The client leaves (`leave`).
    Leave,
    /// The media plane accepted the join.
    JoinAccepted,
    /// The media plane refused the join (full room, bad offer).
    JoinRefused,
    /// The media plane ended the participant's session: it gave up on its media
    /// (`media_failed`), or a moderator removed it (`removed`).
    SessionEnded,
    /// The socket is gone.
    Disconnect,
}

impl Input {
    pub const ALL: [Input; 13] = [
        Input::Join,
        Input::Candidate,
        Input::Restart,
        Input::Layer,
        Input::Share,
        Input::Record,
        Input::Live,
        Input::Moderate,
        Input::Leave,
        Input::JoinAccepted,
        Input::JoinRefused,
        Input::SessionEnded,
        Input::Disconnect,
    ];
}

/// The single transition function. `Err` means the input is refused in `state` and must
/// have no effect.
pub fn transition(state: ConnState, input: Input) -> Result<ConnState, SfuSignalError> {
    use ConnState::*;
    match (state, input) {
        (Idle, Input::Join) => Ok(Joining),
        (Joining | Joined, Input::Join) => Err(SfuSignalError::AlreadyJoined),

        (Idle, Input::Candidate) => Err(SfuSignalError::NotJoined),
        (Joining | Joined, Input::Candidate) => Ok(state),

        // An ICE restart needs a connection that was set up (the join answered).
        (Idle | Joining, Input::Restart) => Err(SfuSignalError::NotJoined),
        (Joined, Input::Restart) => Ok(Joined),

        // Layers are chosen among subscriptions, which exist once joined.
        (Idle | Joining, Input::Layer) => Err(SfuSignalError::NotJoined),
        (Joined, Input::Layer) => Ok(Joined),

        // The screen goes on an m-line the server offers in an `update`: after the join.
        (Idle | Joining, Input::Share) => Err(SfuSignalError::NotJoined),
        (Joined, Input::Share) => Ok(Joined),

        (Idle | Joining, Input::Record) => Err(SfuSignalError::NotJoined),
        (Joined, Input::Record) => Ok(Joined),

        (Idle | Joining, Input::Live) => Err(SfuSignalError::NotJoined),
        (Joined, Input::Live) => Ok(Joined),

        (Idle | Joining, Input::Moderate) => Err(SfuSignalError::NotJoined),
        (Joined, Input::Moderate) => Ok(Joined),

        (Idle, Input::Leave) => Err(SfuSignalError::NotJoined),
        (Joining | Joined, Input::Leave) => Ok(Idle),

        (Joining, Input::JoinAccepted) => Ok(Joined),
        // Left (or disconnected) while the join was on its way: nobody to answer.
        (Idle | Joined, Input::JoinAccepted) => Err(SfuSignalError::NotJoined),

        (Joining, Input::JoinRefused) => Ok(Idle),
        (Idle | Joined, Input::JoinRefused) => Ok(state),

        (Joined, Input::SessionEnded) => Ok(Idle),
        (Idle | Joining, Input::SessionEnded) => Ok(state),

        (_, Input::Disconnect) => Ok(Idle),
    }
}

#[cfg(test)]
mod tests {
    use super::ConnState::*;
    use super::*;

    /// Every (state, input) pair, with the expected outcome: the table is the spec.
    #[test]
    fn every_state_input_pair() {
        let expected = |state: ConnState, input: Input| -> Result<ConnState, SfuSignalError> {
            match input {
                Input::Join if state == Idle => Ok(Joining),
                Input::Join => Err(SfuSignalError::AlreadyJoined),
                Input::Candidate if state == Idle => Err(SfuSignalError::NotJoined),
                Input::Candidate => Ok(state),
                Input::Restart if state == Joined => Ok(Joined),
                Input::Restart => Err(SfuSignalError::NotJoined),
                Input::Layer if state == Joined => Ok(Joined),
                Input::Layer => Err(SfuSignalError::NotJoined),
                Input::Share if state == Joined => Ok(Joined),
                Input::Share => Err(SfuSignalError::NotJoined),
                Input::Record if state == Joined => Ok(Joined),
                Input::Record => Err(SfuSignalError::NotJoined),
                Input::Live if state == Joined => Ok(Joined),
                Input::Live => Err(SfuSignalError::NotJoined),
                Input::Moderate if state == Joined => Ok(Joined),
                Input::Moderate => Err(SfuSignalError::NotJoined),
                Input::Leave if state == Idle => Err(SfuSignalError::NotJoined),
                Input::Leave => Ok(Idle),
                Input::JoinAccepted if state == Joining => Ok(Joined),
                Input::JoinAccepted => Err(SfuSignalError::NotJoined),
                Input::JoinRefused if state == Joining => Ok(Idle),
                Input::JoinRefused => Ok(state),
                Input::SessionEnded if state == Joined => Ok(Idle),
                Input::SessionEnded => Ok(state),
                Input::Disconnect => Ok(Idle),
            }
        };
        let mut checked = 0;
        for state in ConnState::ALL {
            for input in Input::ALL {
                assert_eq!(
                    transition(state, input),
                    expected(state, input),
                    "{state:?} + {input:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 39);
    }

    #[test]
    fn a_session() {
        // Join, a candidate before the answer, answered, restart, failure, join again, leave.
        let mut s = Idle;
        for input in [
            Input::Join,
            Input::Candidate,
            Input::JoinAccepted,
            Input::Candidate,
            Input::Restart,
            Input::Layer,
            Input::Share,
            Input::SessionEnded,
            Input::Join,
            Input::JoinRefused,
            Input::Join,
            Input::Leave,
        ] {
            s = transition(s, input).unwrap_or_else(|e| panic!("{s:?} + {input:?}: {e}"));
        }
        assert_eq!(s, Idle);
    }
}
