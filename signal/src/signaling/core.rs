//! The signaling server without sockets: clients, their states and rooms in, a list of
//! events to deliver out. The socket.io layer (`socketio.rs`) only parses, locks, calls
//! this, and emits what it returns.

use std::{collections::HashMap, hash::Hash, time::Instant};

use super::{
    command::{Command, Payload, RoomName},
    error::SignalError,
    rate_limit::{RateLimit, TokenBucket},
    rooms::Rooms,
    state::{transition, ClientState, Input, RoomVerdict},
};
use crate::passcode::Passcode;

/// A client that has had this many events refused by the rate limiter is disconnected.
pub const MAX_REFUSED_EVENTS: u32 = 1_000;

/// An event for one client, as named in docs/protocol.md.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent<Id> {
    /// To the joiner (`id` is the joiner); `peers` were already in the room.
    Joined {
        room: RoomName,
        id: Id,
        peers: Vec<Id>,
        capacity: usize,
    },
    /// To each member already in the room; `id` is the newcomer.
    OtherJoined { room: RoomName, id: Id },
    /// To a joiner refused because the room is at capacity.
    Full { room: RoomName, id: Id },
    /// To the leaver.
    Leaved { room: RoomName, id: Id },
    /// To each remaining member; `id` is the member who left.
    Bye { room: RoomName, id: Id },
    /// A relayed offer/answer/candidate.
    Message { room: RoomName, data: Payload },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing<Id> {
    pub to: Id,
    pub event: ServerEvent<Id>,
}

/// What to do with an event before parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Over budget: drop the event and tell the client.
    Refuse,
    /// Flooding: drop the connection.
    Disconnect,
}

#[derive(Debug)]
struct Client {
    state: ClientState,
    room: Option<RoomName>,
    bucket: TokenBucket,
}

#[derive(Debug)]
pub struct SignalingCore<Id> {
    clients: HashMap<Id, Client>,
    rooms: Rooms<Id>,
    rate_limit: RateLimit,
}

impl<Id: Copy + Eq + Hash> SignalingCore<Id> {
    pub fn new(room_capacity: usize, rate_limit: RateLimit) -> Self {
        SignalingCore {
            clients: HashMap::new(),
            rooms: Rooms::new(room_capacity),
            rate_limit,
        }
    }

    /// Registers a client; events from unknown clients are registered on first sight too.
    pub fn connect(&mut self, id: Id, now: Instant) {
        self.client(id, now);
    }

    fn client(&mut self, id: Id, now: Instant) -> &mut Client {
        let rate_limit = self.rate_limit;
        self.clients.entry(id).or_insert_with(|| Client {
            state: ClientState::Leaved,
            room: None,
            bucket: TokenBucket::new(rate_limit, now),
        })
    }

    /// Charges one event to the client's budget. Every event is charged, valid or not, so
    /// that garbage floods are limited too.
    pub fn admit(&mut self, id: Id, now: Instant) -> Admission {
        let bucket = &mut self.client(id, now).bucket;
        if bucket.try_take(now) {
            Admission::Accept
        } else if bucket.refused >= MAX_REFUSED_EVENTS {
            Admission::Disconnect
        } else {
            Admission::Refuse
        }
    }

    /// Applies one command. On `Err` nothing has changed and nothing was queued.
    pub fn handle(
        &mut self,
        id: Id,
        command: Command,
        now: Instant,
        out: &mut Vec<Outgoing<Id>>,
    ) -> Result<(), SignalError> {
        match command {
            Command::Join(room, passcode) => self.join(id, room, passcode, now, out),
            Command::Leave(room) => {
                self.check_member(id, &room, now)?;
                let client = self.client(id, now);
                client.state = transition(client.state, Input::Leave)?;
                client.room = None;
                out.push(Outgoing {
                    to: id,
                    event: ServerEvent::Leaved {
                        room: room.clone(),
                        id,
                    },
                });
                self.depart(id, &room, out);
                Ok(())
            }
            Command::Message(room, data) => {
                self.check_member(id, &room, now)?;
                let client = self.client(id, now);
                client.state = transition(client.state, Input::Relay)?;
                for &peer in self.rooms.members(&room) {
                    if peer != id {
                        out.push(Outgoing {
                            to: peer,
                            event: ServerEvent::Message {
                                room: room.clone(),
                                data: data.clone(),
                            },
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// Forgets a client whose socket is gone; its peers get `bye`.
    pub fn disconnect(&mut self, id: Id, out: &mut Vec<Outgoing<Id>>) {
        if let Some(Client {
            room: Some(room), ..
        }) = self.clients.remove(&id)
        {
            self.depart(id, &room, out);
        }
    }

    pub fn state(&self, id: Id) -> Option<ClientState> {
        self.clients.get(&id).map(|c| c.state)
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Rooms where two members or more can talk.
    pub fn call_count(&self) -> usize {
        self.rooms.count_with_at_least(2)
    }

    fn join(
        &mut self,
        id: Id,
        room: RoomName,
        passcode: Option<Passcode>,
        now: Instant,
        out: &mut Vec<Outgoing<Id>>,
    ) -> Result<(), SignalError> {
        // Deciding and joining under the caller's one lock keeps the capacity exact under
        // concurrent joins.
        let verdict = self.rooms.verdict(&room);
        let next = transition(self.client(id, now).state, Input::Join(verdict))?;
        // Before anything else is told: a full room's fullness is for those with its
        // passcode.
        self.rooms.admits(&room, passcode.as_ref())?;
        let client = self.client(id, now);
        client.state = next;
        if verdict == RoomVerdict::Full {
            out.push(Outgoing {
                to: id,
                event: ServerEvent::Full { room, id },
            });
            return Ok(());
        }
        client.room = Some(room.clone());
        let peers = self.rooms.add(&room, id, passcode);
        out.push(Outgoing {
            to: id,
            event: ServerEvent::Joined {
                room: room.clone(),
                id,
                peers: peers.clone(),
                capacity: self.rooms.capacity(),
            },
        });
        for peer in peers {
            if let Some(peer_client) = self.clients.get_mut(&peer) {
                if let Ok(state) = transition(peer_client.state, Input::PeerJoined) {
                    peer_client.state = state;
                }
            }
            out.push(Outgoing {
                to: peer,
                event: ServerEvent::OtherJoined {
                    room: room.clone(),
                    id,
                },
            });
        }
        Ok(())
    }

    /// `id` is no longer in `room`: update the room and tell who remains.
    fn depart(&mut self, id: Id, room: &RoomName, out: &mut Vec<Outgoing<Id>>) {
        let remaining = self.rooms.remove(room, id);
        let peers_left = remaining.len().saturating_sub(1);
        for peer in remaining {
            if let Some(peer_client) = self.clients.get_mut(&peer) {
                if let Ok(state) = transition(peer_client.state, Input::PeerLeft { peers_left }) {
                    peer_client.state = state;
                }
            }
            out.push(Outgoing {
                to: peer,
                event: ServerEvent::Bye {
                    room: room.clone(),
                    id,
                },
            });
        }
    }

    fn check_member(&mut self, id: Id, room: &RoomName, now: Instant) -> Result<(), SignalError> {
        match &self.client(id, now).room {
            Some(current) if current == room => Ok(()),
            _ => Err(SignalError::NotInRoom),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use serde_json::json;

    use super::ClientState::*;
    use super::*;
    use crate::passcode::PasscodeError;

    fn room(name: &str) -> RoomName {
        RoomName::parse(&json!(name)).unwrap()
    }

    struct Harness {
        core: SignalingCore<u32>,
        now: Instant,
    }

    impl Harness {
        fn new(capacity: usize) -> Self {
            Harness {
                core: SignalingCore::new(capacity, RateLimit::default()),
                now: Instant::now(),
            }
        }

        fn send(&mut self, id: u32, cmd: Command) -> Result<Vec<Outgoing<u32>>, SignalError> {
            let mut out = Vec::new();
            let result = self.core.handle(id, cmd, self.now, &mut out);
            if result.is_err() {
                assert!(out.is_empty(), "a refused command must emit nothing");
            }
            result.map(|()| out)
        }

        fn state(&self, id: u32) -> ClientState {
            self.core.state(id).unwrap()
        }
    }

    fn offer() -> Payload {
        Arc::new(json!({"type": "offer", "sdp": "v=0"}))
    }

    #[test]
    fn two_party_call_and_rejoin() {
        let mut h = Harness::new(2);
        let r = room("111");
        let out = h.send(1, Command::Join(r.clone(), None)).unwrap();
        assert_eq!(
            out,
            vec![Outgoing {
                to: 1,
                event: ServerEvent::Joined {
                    room: r.clone(),
                    id: 1,
                    peers: vec![],
                    capacity: 2
                }
            }]
        );
        assert_eq!(h.state(1), Joined);

        let out = h.send(2, Command::Join(r.clone(), None)).unwrap();
        assert_eq!(
            out,
            vec![
                Outgoing {
                    to: 2,
                    event: ServerEvent::Joined {
                        room: r.clone(),
                        id: 2,
                        peers: vec![1],
                        capacity: 2
                    }
                },
                Outgoing {
                    to: 1,
                    event: ServerEvent::OtherJoined {
                        room: r.clone(),
                        id: 2
                    }
                },
            ]
        );
        assert_eq!((h.state(1), h.state(2)), (JoinedConn, JoinedConn));

        let out = h.send(1, Command::Message(r.clone(), offer())).unwrap();
        assert_eq!(
            out,
            vec![Outgoing {
                to: 2,
                event: ServerEvent::Message {
                    room: r.clone(),
                    data: offer()
                }
            }]
        );

        let out = h.send(2, Command::Leave(r.clone())).unwrap();
        assert_eq!(
            out,
            vec![
                Outgoing {
                    to: 2,
                    event: ServerEvent::Leaved {
                        room: r.clone(),
                        id: 2
                    }
                },
                Outgoing {
                    to: 1,
                    event: ServerEvent::Bye {
                        room: r.clone(),
                        id: 2
                    }
                },
            ]
        );
        assert_eq!((h.state(1), h.state(2)), (JoinedUnbind, Leaved));
        assert_eq!(
            h.send(1, Command::Message(r.clone(), offer())),
            Err(SignalError::NoPeer)
        );

        // A new peer turns the waiting member back into a call.
        h.send(3, Command::Join(r.clone(), None)).unwrap();
        assert_eq!((h.state(1), h.state(3)), (JoinedConn, JoinedConn));
    }

    #[test]
    fn third_joiner_gets_full_and_stays_out() {
        let mut h = Harness::new(2);
        let r = room("111");
        h.send(1, Command::Join(r.clone(), None)).unwrap();
        h.send(2, Command::Join(r.clone(), None)).unwrap();
        let out = h.send(3, Command::Join(r.clone(), None)).unwrap();
        assert_eq!(
            out,
            vec![Outgoing {
                to: 3,
                event: ServerEvent::Full {
                    room: r.clone(),
                    id: 3
                }
            }]
        );
        assert_eq!(h.state(3), Leaved);
        assert_eq!(
            h.send(3, Command::Message(r.clone(), offer())),
            Err(SignalError::NotInRoom)
        );
        // The refused joiner can go elsewhere.
        assert!(h.send(3, Command::Join(room("222"), None)).is_ok());
        assert_eq!(h.state(3), Joined);
    }

    #[test]
    fn a_passcode_set_by_the_first_member_is_needed_by_the_next_until_the_room_empties() {
        let mut h = Harness::new(2);
        let r = room("111");
        let code = |text: &str| Passcode::parse(Some(&json!(text))).unwrap();
        h.send(1, Command::Join(r.clone(), code("sesame"))).unwrap();
        assert_eq!(
            h.send(2, Command::Join(r.clone(), None)),
            Err(PasscodeError::Required.into())
        );
        assert_eq!(
            h.send(2, Command::Join(r.clone(), code("Sesame"))),
            Err(PasscodeError::Wrong.into())
        );
        assert_eq!(h.state(2), Leaved, "refused: nothing changed");
        h.send(2, Command::Join(r.clone(), code("sesame"))).unwrap();
        assert_eq!((h.state(1), h.state(2)), (JoinedConn, JoinedConn));
        // Full: said only to who has the passcode.
        assert_eq!(
            h.send(3, Command::Join(r.clone(), code("guess"))),
            Err(PasscodeError::Wrong.into())
        );
        assert!(matches!(
            h.send(3, Command::Join(r.clone(), code("sesame"))).unwrap()[0].event,
            ServerEvent::Full { .. }
        ));
        // A passcode given to a room without one changes nothing; a room that empties
        // forgets its passcode.
        h.send(1, Command::Leave(r.clone())).unwrap();
        h.send(2, Command::Leave(r.clone())).unwrap();
        h.send(3, Command::Join(r.clone(), None)).unwrap();
        h.send(4, Command::Join(r.clone(), code("anything")))
            .unwrap();
    }

    #[test]
    fn invalid_events_have_no_effect() {
        let mut h = Harness::new(2);
        let (a, b) = (room("a"), room("b"));
        assert_eq!(
            h.send(1, Command::Leave(a.clone())),
            Err(SignalError::NotInRoom)
        );
        assert_eq!(
            h.send(1, Command::Message(a.clone(), offer())),
            Err(SignalError::NotInRoom)
        );
        h.send(1, Command::Join(a.clone(), None)).unwrap();
        assert_eq!(
            h.send(1, Command::Join(a.clone(), None)),
            Err(SignalError::AlreadyJoined)
        );
        assert_eq!(
            h.send(1, Command::Join(b.clone(), None)),
            Err(SignalError::AlreadyJoined)
        );
        assert_eq!(
            h.send(1, Command::Message(a.clone(), offer())),
            Err(SignalError::NoPeer)
        );
        assert_eq!(
            h.send(1, Command::Leave(b.clone())),
            Err(SignalError::NotInRoom)
        );
        assert_eq!(h.state(1), Joined);
        assert_eq!(h.core.room_count(), 1);
    }

    #[test]
    fn no_relay_into_another_room() {
        let mut h = Harness::new(2);
        let (a, b) = (room("a"), room("b"));
        h.send(1, Command::Join(a.clone(), None)).unwrap();
        h.send(2, Command::Join(a.clone(), None)).unwrap();
        h.send(3, Command::Join(b.clone(), None)).unwrap();
        h.send(4, Command::Join(b.clone(), None)).unwrap();
        // 3 names room "a" but is in "b": refused, and nobody in "a" hears anything.
        assert_eq!(
            h.send(3, Command::Message(a.clone(), offer())),
            Err(SignalError::NotInRoom)
        );
        let out = h.send(3, Command::Message(b.clone(), offer())).unwrap();
        assert_eq!(out.iter().map(|o| o.to).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn disconnect_says_bye_and_frees_the_room() {
        let mut h = Harness::new(2);
        let r = room("r");
        h.send(1, Command::Join(r.clone(), None)).unwrap();
        h.send(2, Command::Join(r.clone(), None)).unwrap();
        let mut out = Vec::new();
        h.core.disconnect(2, &mut out);
        assert_eq!(
            out,
            vec![Outgoing {
                to: 1,
                event: ServerEvent::Bye {
                    room: r.clone(),
                    id: 2
                }
            }]
        );
        assert_eq!(h.state(1), JoinedUnbind);
        assert_eq!(h.core.state(2), None);
        let mut out = Vec::new();
        h.core.disconnect(1, &mut out);
        assert!(out.is_empty());
        assert_eq!((h.core.room_count(), h.core.client_count()), (0, 0));
    }

    #[test]
    fn larger_rooms_relay_to_everyone_else() {
        let mut h = Harness::new(3);
        let r = room("r");
        for id in 1..=3 {
            h.send(id, Command::Join(r.clone(), None)).unwrap();
        }
        let out = h.send(2, Command::Message(r.clone(), offer())).unwrap();
        assert_eq!(out.iter().map(|o| o.to).collect::<Vec<_>>(), vec![1, 3]);
        h.send(3, Command::Leave(r.clone())).unwrap();
        // Two remain: still connected to each other.
        assert_eq!((h.state(1), h.state(2)), (JoinedConn, JoinedConn));
    }

    #[test]
    fn rate_limit_refuses_then_disconnects() {
        let limit = RateLimit {
            burst: 2,
            per_second: 1,
        };
        let mut core = SignalingCore::<u32>::new(2, limit);
        let t0 = Instant::now();
        assert_eq!(core.admit(1, t0), Admission::Accept);
        assert_eq!(core.admit(1, t0), Admission::Accept);
        assert_eq!(core.admit(1, t0), Admission::Refuse);
        assert_eq!(
            core.admit(2, t0),
            Admission::Accept,
            "budgets are per client"
        );
        assert_eq!(
            core.admit(1, t0 + Duration::from_secs(1)),
            Admission::Accept
        );
        let verdicts: Vec<_> = (0..MAX_REFUSED_EVENTS)
            .map(|_| core.admit(1, t0 + Duration::from_secs(1)))
            .collect();
        assert_eq!(verdicts.last(), Some(&Admission::Disconnect));
    }
}
