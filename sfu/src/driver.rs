//! The driver: the only code of the media plane that touches a socket, a clock or tokio.
//!
//! One thread (a current-thread runtime) owns the media socket and the [`SfuCore`]; the
//! façade ([`crate::Sfu`]) sends it requests over a channel. Each turn of the loop drains
//! the core's outputs (datagrams into one batch for `sendmmsg`, events to each
//! participant's channel), then waits for whichever comes first: a request, datagrams
//! (read with one `recvmmsg`), or the core's next deadline.

use std::{
    collections::HashMap,
    io,
    net::UdpSocket as StdUdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::{SyncSender, TrySendError},
        Arc,
    },
    thread,
    time::{Instant, SystemTime},
};

use tokio::{
    io::Interest,
    net::UdpSocket,
    sync::{mpsc, oneshot},
};
use udp_batch::MmsgBatch;

use crate::{
    api::{JoinAnswer, ParticipantEvent, SfuError, TrackKind},
    core::{Command, Output, Reply, SfuCore, TapOutput},
    ids::{ParticipantId, TapId},
    net::outbox::{ArrivalClock, Inbox, Outbox, BATCH},
};

/// A request from the façade.
pub(crate) enum Request {
    Join {
        command: Command,
        /// Where the participant's events go once it has joined.
        events: mpsc::UnboundedSender<ParticipantEvent>,
        reply: oneshot::Sender<Result<JoinAnswer, SfuError>>,
    },
    Command {
        command: Command,
        /// `None`: nobody waits for the reply.
        reply: Option<oneshot::Sender<Result<Reply, SfuError>>>,
    },
    /// A tap whose packets go to `sink` (bounded: a consumer that falls behind loses its
    /// tap, the media thread never waits for it).
    AttachTap {
        publisher: ParticipantId,
        kind: TrackKind,
        sink: SyncSender<TapOutput>,
        reply: oneshot::Sender<Result<TapId, SfuError>>,
    },
}

/// Figures the façade reads without a round trip to the loop.
#[derive(Default)]
pub(crate) struct Shared {
    pub rooms: AtomicUsize,
    pub participants: AtomicUsize,
}

/// Exits the process when the media thread dies of a panic: a server whose media plane is
/// gone but whose web side still accepts joins is worse than one its supervisor restarts.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            tracing::error!("the media thread panicked; exiting");
            std::process::exit(70);
        }
    }
}

/// Starts the media thread around `core` and `socket`; it runs until the returned sender
/// (and every clone) is dropped.
pub(crate) fn spawn(
    core: SfuCore,
    socket: StdUdpSocket,
    shared: Arc<Shared>,
) -> Result<mpsc::UnboundedSender<Request>, SfuError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SfuError::Thread)?;
    thread::Builder::new()
        .name("sfu-media".into())
        .spawn(move || {
            let _exit_on_panic = ExitOnPanic;
            runtime.block_on(async move {
                match UdpSocket::from_std(socket) {
                    Ok(socket) => Driver::new(core, socket, shared).run(rx).await,
                    Err(error) => tracing::error!(%error, "media socket"),
                }
            })
        })
        .map_err(SfuError::Thread)?;
    Ok(tx)
}

struct Driver {
    core: SfuCore,
    socket: UdpSocket,
    shared: Arc<Shared>,
    /// Each participant's event channel to its signaling.
    events: HashMap<ParticipantId, mpsc::UnboundedSender<ParticipantEvent>>,
    /// Each tap's consumer.
    taps: HashMap<TapId, SyncSender<TapOutput>>,
    outbox: Outbox,
    inbox: Inbox,
    batch: MmsgBatch,
}

impl Driver {
    fn new(core: SfuCore, socket: UdpSocket, shared: Arc<Shared>) -> Self {
        Driver {
            core,
            socket,
            shared,
            events: HashMap::new(),
            taps: HashMap::new(),
            outbox: Outbox::default(),
            inbox: Inbox::default(),
            batch: MmsgBatch::new(BATCH),
        }
    }

    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        loop {
            let wake = self.drain();
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    Some(request) => self.request(request),
                    None => break,
                },
                ready = self.socket.readable() => {
                    if ready.is_ok() {
                        self.read();
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if now >= wake {
                self.core.handle_timeout(now);
            }
        }
        self.core.shutdown();
        self.drain();
    }

    /// Takes every output of the core; returns when it next wants a timeout.
    fn drain(&mut self) -> Instant {
        let mut lost_taps = Vec::new();
        let wake = loop {
            match self.core.poll_output() {
                Output::Transmit(t) => self.outbox.push(t.participant, t.contents, t.destination),
                Output::Event { participant, event } => {
                    if let Some(events) = self.events.get(&participant) {
                        let _ = events.send(event);
                    }
                }
                Output::Tap(TapOutput::Packet(packet)) => {
                    let tap = packet.tap;
                    if let Some(sink) = self.taps.get(&tap) {
                        match sink.try_send(TapOutput::Packet(packet)) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => {
                                tracing::warn!(?tap, "tap consumer fell behind: tap detached");
                                lost_taps.push(tap);
                            }
                            Err(TrySendError::Disconnected(_)) => lost_taps.push(tap),
                        }
                    }
                }
                Output::Tap(TapOutput::Ended(tap)) => {
                    tracing::debug!(?tap, "tap ended");
                    if let Some(sink) = self.taps.remove(&tap) {
                        let _ = sink.try_send(TapOutput::Ended(tap));
                    }
                }
                Output::Timeout(at) => break at,
            }
        };
        // Dropping the sender without `Ended` tells the consumer it lost the tap.
        for tap in lost_taps {
            self.taps.remove(&tap);
            let _ = self
                .core
                .handle_command(Instant::now(), Command::DetachTap { tap });
        }
        if !self.outbox.is_empty() {
            let core = &mut self.core;
            self.outbox
                .send(self.socket.as_raw_fd(), &mut self.batch, |owner| {
                    core.datagram_dropped(owner)
                });
        }
        self.store_counts();
        wake
    }

    /// Publishes the room and participant counts (`Sfu::counts`).
    fn store_counts(&self) {
        let (rooms, participants) = self.core.counts();
        self.shared.rooms.store(rooms, Ordering::Relaxed);
        self.shared
            .participants
            .store(participants, Ordering::Relaxed);
    }

    /// One `recvmmsg`'s worth of datagrams into the core.
    fn read(&mut self) {
        let fd = self.socket.as_raw_fd();
        let inbox = &mut self.inbox;
        let received = self
            .socket
            .try_io(Interest::READABLE, || match inbox.recv(fd) {
                Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                other => other,
            });
        match received {
            Ok(_) => {
                let now = Instant::now();
                let clock = ArrivalClock::new(now, SystemTime::now());
                for datagram in self.inbox.datagrams() {
                    let arrived = clock.arrived(datagram.at);
                    self.core
                        .handle_datagram_at(now, arrived, datagram.from, datagram.data);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            // ICMP port unreachable from a vanished browser, etc.
            Err(error) => tracing::debug!(%error, "recv failed"),
        }
    }

    fn request(&mut self, request: Request) {
        let now = Instant::now();
        match request {
            Request::Join {
                command,
                events,
                reply,
            } => {
                let Command::Join { id, .. } = command else {
                    unreachable!("Request::Join carries a join");
                };
                let joined = match self.core.handle_command(now, command) {
                    Ok(Reply::Joined(answer)) => {
                        self.events.insert(id, events);
                        Ok(answer)
                    }
                    Ok(_) => Err(SfuError::Stopped),
                    Err(error) => Err(error),
                };
                // Whoever the reply wakes sees the counts that include this join.
                self.store_counts();
                if let Err(Ok(_)) = reply.send(joined) {
                    // Nobody waits for this join any more: undo it.
                    self.leave(now, id);
                }
            }
            Request::AttachTap {
                publisher,
                kind,
                sink,
                reply,
            } => {
                let attached = match self
                    .core
                    .handle_command(now, Command::AttachTap { publisher, kind })
                {
                    Ok(Reply::Tap(tap)) => {
                        self.taps.insert(tap, sink);
                        Ok(tap)
                    }
                    Ok(_) => Err(SfuError::Stopped),
                    Err(error) => Err(error),
                };
                if let Err(Ok(tap)) = reply.send(attached) {
                    // Nobody waits for this tap any more.
                    self.taps.remove(&tap);
                    let _ = self.core.handle_command(now, Command::DetachTap { tap });
                }
            }
            Request::Command { command, reply } => {
                let leaving = match command {
                    Command::Leave { id } => Some(id),
                    Command::DetachTap { tap } => {
                        self.taps.remove(&tap);
                        None
                    }
                    _ => None,
                };
                let result = self.core.handle_command(now, command);
                if let Some(id) = leaving {
                    self.events.remove(&id);
                }
                self.store_counts();
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn leave(&mut self, now: Instant, id: ParticipantId) {
        let _ = self.core.handle_command(now, Command::Leave { id });
        self.events.remove(&id);
    }
}
