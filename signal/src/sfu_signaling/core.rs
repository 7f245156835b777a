//! The `/sfu` signaling without sockets: each connection's state, its event budget, and
//! what to ask of the media plane, through the [`MediaPlane`] trait (the SFU in production,
//! a recording fake in tests). The socket.io layer (`socketio.rs`) only parses, locks,
//! calls this, and acks or emits what it returns.
//!
//! The media plane's calls are sends, made while the caller holds the lock for this one
//! event: a connection's requests reach the media plane in the order its events arrived.

use std::{collections::HashMap, hash::Hash, time::Duration, time::Instant};

use serde_json::{json, Value};
use sfu::{IceCandidate, JoinOptions, Moderation, ParticipantId, Source};

use super::{
    command::{SfuCommand, SfuSignalError},
    state::{transition, ConnState, Input},
};
use crate::signaling::{
    command::RoomName,
    core::{Admission, MAX_REFUSED_EVENTS},
    rate_limit::{RateLimit, TokenBucket},
};

/// Fewest seconds between two `restart`s of one connection (each costs a renegotiation).
pub const RESTART_INTERVAL: Duration = Duration::from_secs(2);

/// What the signaling core asks of the media plane. Every call only sends; the answer to
/// a join comes back as [`MediaPlane::JoinReply`] (awaited by the caller).
pub trait MediaPlane {
    type JoinReply;
    fn join(
        &mut self,
        room: &RoomName,
        name: &str,
        offer: String,
        options: JoinOptions,
    ) -> (ParticipantId, Self::JoinReply);
    fn add_candidate(&mut self, id: ParticipantId, candidate: IceCandidate);
    fn restart(&mut self, id: ParticipantId);
    fn prefer_layer(
        &mut self,
        id: ParticipantId,
        publisher: ParticipantId,
        source: Source,
        layer: Option<u8>,
    );
    fn share(&mut self, id: ParticipantId, on: bool);
    fn leave(&mut self, id: ParticipantId);
}

/// What to answer an event with.
#[derive(Debug)]
pub enum Reply<J> {
    /// Ack at once.
    Ack(Value),
    /// The ack waits for the media plane's answer to this join.
    Joining(ParticipantId, J),
    /// Participant `.0` asks to start (`true`) or stop the room's recording: the caller
    /// does it and acks.
    Record(ParticipantId, bool),
    /// Participant `.0` asks to put the room on (`true`) or off air: the caller does it and
    /// acks.
    Live(ParticipantId, bool),
    /// Participant `.0` moderates the room: the caller asks the media plane (which checks
    /// the room-host rule) and acks.
    Moderate(ParticipantId, Moderation),
}

#[derive(Debug)]
struct Conn {
    state: ConnState,
    /// The participant a `Joining`/`Joined` connection stands for.
    participant: Option<ParticipantId>,
    bucket: TokenBucket,
    last_restart: Option<Instant>,
}

#[derive(Debug)]
pub struct SfuSignalingCore<Sid> {
    conns: HashMap<Sid, Conn>,
    rate_limit: RateLimit,
}

impl<Sid: Copy + Eq + Hash> SfuSignalingCore<Sid> {
    pub fn new(rate_limit: RateLimit) -> Self {
        SfuSignalingCore {
            conns: HashMap::new(),
            rate_limit,
        }
    }

    pub fn connect(&mut self, sid: Sid, now: Instant) {
        self.conn(sid, now);
    }

    fn conn(&mut self, sid: Sid, now: Instant) -> &mut Conn {
        let rate_limit = self.rate_limit;
        self.conns.entry(sid).or_insert_with(|| Conn {
            state: ConnState::Idle,
            participant: None,
            bucket: TokenBucket::new(rate_limit, now),
            last_restart: None,
        })
    }

    /// Charges one event to the connection's budget (the 1-to-1 side's bucket and flood
    /// threshold). Every event is charged, valid or not.
    pub fn admit(&mut self, sid: Sid, now: Instant) -> Admission {
        let bucket = &mut self.conn(sid, now).bucket;
        if bucket.try_take(now) {
            Admission::Accept
        } else if bucket.refused >= MAX_REFUSED_EVENTS {
            Admission::Disconnect
        } else {
            Admission::Refuse
        }
    }

    /// Applies one client command. On `Err` nothing changed and nothing was sent.
    pub fn handle<M: MediaPlane>(
        &mut self,
        sid: Sid,
        command: SfuCommand,
        now: Instant,
        media: &mut M,
    ) -> Result<Reply<M::JoinReply>, SfuSignalError> {
        let conn = self.conn(sid, now);
        let ok = || Reply::Ack(json!({ "ok": true }));
        match command {
            SfuCommand::Join {
                room,
                name,
                offer,
                options,
            } => {
                conn.state = transition(conn.state, Input::Join)?;
                let (id, reply) = media.join(&room, &name, offer, options);
                conn.participant = Some(id);
                Ok(Reply::Joining(id, reply))
            }
            SfuCommand::Candidate { candidate } => {
                conn.state = transition(conn.state, Input::Candidate)?;
                media.add_candidate(conn.id()?, candidate);
                Ok(ok())
            }
            SfuCommand::Layer {
                publisher,
                source,
                layer,
            } => {
                transition(conn.state, Input::Layer)?;
                media.prefer_layer(conn.id()?, publisher, source, layer);
                Ok(ok())
            }
            SfuCommand::Share { on } => {
                transition(conn.state, Input::Share)?;
                media.share(conn.id()?, on);
                Ok(ok())
            }
            SfuCommand::Record { on } => {
                transition(conn.state, Input::Record)?;
                Ok(Reply::Record(conn.id()?, on))
            }
            SfuCommand::Live { on } => {
                transition(conn.state, Input::Live)?;
                Ok(Reply::Live(conn.id()?, on))
            }
            SfuCommand::Moderate(action) => {
                transition(conn.state, Input::Moderate)?;
                Ok(Reply::Moderate(conn.id()?, action))
            }
            SfuCommand::Restart => {
                let next = transition(conn.state, Input::Restart)?;
                if conn
                    .last_restart
                    .is_some_and(|at| now.saturating_duration_since(at) < RESTART_INTERVAL)
                {
                    return Err(SfuSignalError::RateLimited);
                }
                conn.state = next;
                conn.last_restart = Some(now);
                media.restart(conn.id()?);
                Ok(ok())
            }
            SfuCommand::Leave => {
                let id = conn.id()?;
                conn.state = transition(conn.state, Input::Leave)?;
                conn.participant = None;
                media.leave(id);
                Ok(ok())
            }
        }
    }

    /// The media plane answered join `id`: `Ok` if the answer is to be delivered (the
    /// connection is now joined), `Err` if it is refused or nobody waits for it any more
    /// (left or disconnected meanwhile, which already asked the media plane to leave).
    pub fn join_settled(
        &mut self,
        sid: Sid,
        id: ParticipantId,
        accepted: bool,
    ) -> Result<(), SfuSignalError> {
        let conn = self
            .conns
            .get_mut(&sid)
            .filter(|c| c.participant == Some(id))
            .ok_or(SfuSignalError::NotJoined)?;
        let input = if accepted {
            Input::JoinAccepted
        } else {
            Input::JoinRefused
        };
        conn.state = transition(conn.state, input)?;
        if conn.state == ConnState::Idle {
            conn.participant = None;
        }
        Ok(())
    }

    /// The media plane ended participant `id`'s session (gave up on its media, or a
    /// moderator removed it). Returns whether this connection was in that session (then it
    /// has left, and the page must hear why).
    pub fn session_ended<M: MediaPlane>(
        &mut self,
        sid: Sid,
        id: ParticipantId,
        media: &mut M,
    ) -> bool {
        let Some(conn) = self
            .conns
            .get_mut(&sid)
            .filter(|c| c.participant == Some(id))
        else {
            return false;
        };
        // Only a joined session is ended so (a joining one learns it from the join's
        // answer).
        let next = transition(conn.state, Input::SessionEnded).unwrap_or(conn.state);
        if next == conn.state {
            return false;
        }
        conn.state = next;
        conn.participant = None;
        media.leave(id);
        true
    }

    /// The socket is gone: its participant (joined or still joining) leaves.
    pub fn disconnect<M: MediaPlane>(&mut self, sid: Sid, media: &mut M) {
        if let Some(conn) = self.conns.remove(&sid) {
            let _ = transition(conn.state, Input::Disconnect);
            if let Some(id) = conn.participant {
                media.leave(id);
            }
        }
    }

    pub fn state(&self, sid: Sid) -> Option<(ConnState, Option<ParticipantId>)> {
        self.conns.get(&sid).map(|c| (c.state, c.participant))
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }
}

impl Conn {
    fn id(&self) -> Result<ParticipantId, SfuSignalError> {
        self.participant.ok_or(SfuSignalError::NotJoined)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sfu::ids::IdGen;

    use super::*;

    /// Records what the media plane was asked, in order.
    #[derive(Default)]
    struct Recorder {
        ids: Option<IdGen>,
        calls: Vec<String>,
    }

    impl MediaPlane for Recorder {
        type JoinReply = ();
        fn join(
            &mut self,
            room: &RoomName,
            name: &str,
            _: String,
            _: JoinOptions,
        ) -> (ParticipantId, ()) {
            let id = self
                .ids
                .get_or_insert_with(|| IdGen::new(0, 1))
                .participant();
            self.calls.push(format!("join {room} {name} -> {id}"));
            (id, ())
        }
        fn add_candidate(&mut self, id: ParticipantId, _: IceCandidate) {
            self.calls.push(format!("candidate {id}"));
        }
        fn restart(&mut self, id: ParticipantId) {
            self.calls.push(format!("restart {id}"));
        }
        fn prefer_layer(
            &mut self,
            id: ParticipantId,
            publisher: ParticipantId,
            source: Source,
            layer: Option<u8>,
        ) {
            self.calls
                .push(format!("layer {id} {publisher} {source:?} {layer:?}"));
        }
        fn share(&mut self, id: ParticipantId, on: bool) {
            self.calls.push(format!("share {id} {on}"));
        }
        fn leave(&mut self, id: ParticipantId) {
            self.calls.push(format!("leave {id}"));
        }
    }

    fn join() -> SfuCommand {
        SfuCommand::Join {
            room: RoomName::parse(&json!("r")).unwrap(),
            name: "Ada".into(),
            offer: "v=0".into(),
            options: JoinOptions::default(),
        }
    }

    fn candidate() -> SfuCommand {
        SfuCommand::Candidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
                .parse()
                .unwrap(),
        }
    }

    struct Harness {
        core: SfuSignalingCore<u32>,
        media: Recorder,
        now: Instant,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                core: SfuSignalingCore::new(RateLimit::default()),
                media: Recorder::default(),
                now: Instant::now(),
            }
        }

        fn send(&mut self, sid: u32, command: SfuCommand) -> Result<Reply<()>, SfuSignalError> {
            let calls = self.media.calls.len();
            let result = self.core.handle(sid, command, self.now, &mut self.media);
            if result.is_err() {
                assert_eq!(self.media.calls.len(), calls, "a refusal asks nothing");
            }
            result
        }

        fn joining(&mut self, sid: u32) -> ParticipantId {
            match self.send(sid, join()).unwrap() {
                Reply::Joining(id, ()) => id,
                other => panic!("{other:?}"),
            }
        }
    }

    /// The ordering hazard of the old handler: a candidate sent right after `join`, before
    /// its answer, reaches the media plane after the join, for that participant.
    #[test]
    fn a_candidate_right_after_join_follows_it() {
        let mut h = Harness::new();
        let id = h.joining(1);
        assert!(matches!(h.send(1, candidate()), Ok(Reply::Ack(_))));
        assert!(matches!(h.send(1, candidate()), Ok(Reply::Ack(_))));
        assert_eq!(
            h.media.calls,
            [
                format!("join r Ada -> {id}"),
                format!("candidate {id}"),
                format!("candidate {id}")
            ]
        );
        h.core.join_settled(1, id, true).unwrap();
        assert_eq!(h.core.state(1), Some((ConnState::Joined, Some(id))));
    }

    #[test]
    fn leaving_while_joining_makes_the_late_answer_moot() {
        let mut h = Harness::new();
        let first = h.joining(1);
        assert!(matches!(h.send(1, SfuCommand::Leave), Ok(Reply::Ack(_))));
        // A new join before the first answer is back.
        let second = h.joining(1);
        assert_eq!(
            h.core.join_settled(1, first, true),
            Err(SfuSignalError::NotJoined),
            "the first answer finds nobody"
        );
        h.core.join_settled(1, second, true).unwrap();
        assert_eq!(h.core.state(1), Some((ConnState::Joined, Some(second))));
        assert_eq!(
            h.media.calls,
            [
                format!("join r Ada -> {first}"),
                format!("leave {first}"),
                format!("join r Ada -> {second}")
            ]
        );
    }

    #[test]
    fn refused_joins_and_bad_orders_change_nothing() {
        let mut h = Harness::new();
        assert_eq!(
            h.send(1, candidate()).unwrap_err(),
            SfuSignalError::NotJoined
        );
        assert_eq!(
            h.send(1, SfuCommand::Leave).unwrap_err(),
            SfuSignalError::NotJoined
        );
        assert_eq!(
            h.send(1, SfuCommand::Restart).unwrap_err(),
            SfuSignalError::NotJoined
        );
        let id = h.joining(1);
        assert_eq!(
            h.send(1, join()).unwrap_err(),
            SfuSignalError::AlreadyJoined
        );
        assert_eq!(
            h.send(1, SfuCommand::Restart).unwrap_err(),
            SfuSignalError::NotJoined
        );
        let end = || SfuCommand::Moderate(Moderation::EndRoom);
        assert_eq!(h.send(1, end()).unwrap_err(), SfuSignalError::NotJoined);
        h.core.join_settled(1, id, false).unwrap();
        assert_eq!(h.core.state(1), Some((ConnState::Idle, None)));
        assert_eq!(h.send(1, end()).unwrap_err(), SfuSignalError::NotJoined);
        // The same connection may join again.
        h.joining(1);
    }

    #[test]
    fn restarts_are_passed_on_at_most_one_per_interval() {
        let mut h = Harness::new();
        let id = h.joining(1);
        h.core.join_settled(1, id, true).unwrap();
        assert!(h.send(1, SfuCommand::Restart).is_ok());
        assert_eq!(
            h.send(1, SfuCommand::Restart).unwrap_err(),
            SfuSignalError::RateLimited
        );
        h.now += RESTART_INTERVAL;
        assert!(h.send(1, SfuCommand::Restart).is_ok());
        assert_eq!(
            h.media
                .calls
                .iter()
                .filter(|c| c.starts_with("restart"))
                .count(),
            2
        );
    }

    #[test]
    fn media_failure_and_disconnect_leave_once() {
        let mut h = Harness::new();
        let id = h.joining(1);
        h.core.join_settled(1, id, true).unwrap();
        let other: ParticipantId = "p0123456789ab".parse().unwrap();
        assert!(
            !h.core.session_ended(1, other, &mut h.media),
            "another session"
        );
        assert!(matches!(
            h.send(1, SfuCommand::Moderate(Moderation::EndRoom)),
            Ok(Reply::Moderate(by, Moderation::EndRoom)) if by == id
        ));
        assert!(h.core.session_ended(1, id, &mut h.media));
        assert!(!h.core.session_ended(1, id, &mut h.media), "once");
        assert_eq!(h.core.state(1), Some((ConnState::Idle, None)));
        h.core.disconnect(1, &mut h.media);
        // Disconnecting while joining leaves too.
        let joining = h.joining(2);
        h.core.disconnect(2, &mut h.media);
        assert_eq!(
            h.media
                .calls
                .iter()
                .filter(|c| c.starts_with("leave"))
                .collect::<Vec<_>>(),
            [&format!("leave {id}"), &format!("leave {joining}")]
        );
        assert_eq!(h.core.connection_count(), 0);
    }

    #[test]
    fn floods_are_refused_then_disconnected() {
        let mut core = SfuSignalingCore::<u32>::new(RateLimit {
            burst: 1,
            per_second: 1,
        });
        let t0 = Instant::now();
        assert_eq!(core.admit(1, t0), Admission::Accept);
        assert_eq!(core.admit(1, t0), Admission::Refuse);
        let verdicts: Vec<_> = (0..MAX_REFUSED_EVENTS).map(|_| core.admit(1, t0)).collect();
        assert_eq!(verdicts.last(), Some(&Admission::Disconnect));
    }
}
