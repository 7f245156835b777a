//! A lab for the sans-IO core: str0m client `Rtc`s (in frame mode, like a browser's
//! encoder/decoder) and the [`SfuCore`] exchange datagrams through a fake network, on
//! virtual time — minutes of a call in milliseconds, with no socket and no clock.
//!
//! What a browser's signaling would do is done here too: the join answer is applied, the
//! core's `update` offers are answered (after a small delay, or refused, or ignored, per
//! client), and a `Failed` participant leaves.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::Once,
    time::{Duration, Instant, SystemTime},
};

use sfu::{
    core::{Command, Output, Reply, SfuCore, TapOutput},
    ids::IdGen,
    media::fanout::TapPacket,
    JoinOptions, NetConfig, ParticipantEvent, ParticipantId, ParticipantInfo, Round, SfuConfig,
    SfuError, Source,
};
use str0m::{
    bwe::Bitrate,
    change::{SdpAnswer, SdpOffer, SdpPendingOffer},
    format::Codec,
    media::{Direction, MediaKind, MediaTime, Mid},
    net::{Protocol, Receive},
    rtp::rtcp::SenderInfo,
    Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc,
};

pub const SERVER: &str = "198.51.100.1:40000";
/// One-way network delay.
pub const LATENCY: Duration = Duration::from_millis(5);
/// How long a page takes to answer an `update`.
pub const ANSWER_DELAY: Duration = Duration::from_millis(30);
const VIDEO_FRAME: Duration = Duration::from_millis(40);
/// The most a capped downlink queues (then drops).
const QUEUE_LIMIT: Duration = Duration::from_millis(200);
const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// How often a client with `remb_bps` reports it (Chromium: in every RTCP compound packet).
const REMB_EVERY: Duration = Duration::from_millis(500);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn log_init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `RUST_LOG=sfu=debug,str0m=debug cargo test -p sfu --test core` to watch a test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}

/// What a client's signaling does with an `update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updates {
    Answer,
    /// Answers `{error}` (the page could not apply the offer).
    Refuse,
    /// Never answers (a frozen page).
    Ignore,
}

/// A video frame as the client's decoder got it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub at: Instant,
    /// The m-line it came on.
    pub mid: Mid,
    pub keyframe: bool,
    pub video: bool,
    /// Its RTP time, and the sender report it came under: when it was captured, as the
    /// receiver works it out for lip sync.
    pub time: MediaTime,
    pub sender_info: Option<SenderInfo>,
}

impl Frame {
    /// When it was captured according to its stream's sender report (`None` before one).
    pub fn reported_capture(&self) -> Option<SystemTime> {
        let report = self.sender_info?;
        let rate = self.time.frequency().get() as i64;
        let ticks = (self.time.numer() as u32).wrapping_sub(report.rtp_time.numer() as u32) as i32;
        let nanos = i64::from(ticks) * 1_000_000_000 / rate;
        Some(if nanos >= 0 {
            report.ntp_time + Duration::from_nanos(nanos as u64)
        } else {
            report.ntp_time - Duration::from_nanos(nanos.unsigned_abs())
        })
    }
}

pub struct Client {
    pub name: String,
    pub rtc: Rtc,
    /// The client's own address (its host candidate).
    pub local: SocketAddr,
    /// Where its datagrams come from as the server sees them (a NAT's mapping); changing
    /// it is a NAT rebinding. Datagrams to an old mapping are lost.
    pub public: SocketAddr,
    pub id: Option<ParticipantId>,
    /// A vanished client neither sends nor receives anything.
    pub alive: bool,
    /// Its network is cut (both directions), but the client itself carries on.
    pub cut: bool,
    /// Its link loses one datagram in this many, both ways (0: none).
    pub loss_one_in: u32,
    sent_or_received: u32,
    /// Its downlink carries at most this many bits per second: datagrams queue behind each
    /// other (a bottleneck router's buffer) and are dropped when [`QUEUE_LIMIT`] behind.
    pub downlink_bps: Option<u64>,
    downlink_free_at: Option<Instant>,
    /// Reports this receiver estimate (REMB) on every video it receives, as Chromium does
    /// where the server sends no transport-wide sequence numbers.
    pub remb_bps: Option<u64>,
    next_remb: Option<Instant>,
    /// `VideoPaused` events: (when, whose video, paused, which of its videos).
    pub video_paused: Vec<(Instant, ParticipantId, bool, Source)>,
    pub updates: Updates,
    pub publishes: bool,
    /// Sends a keyframe when asked (a browser does; turn it off to see who waits for one).
    pub answers_keyframe_requests: bool,
    pub mids: Vec<(Mid, MediaKind)>,
    /// The m-line the server offered to receive its screen on (see `share`); the client
    /// sends the same frames there as on its camera's.
    pub screen: Option<Mid>,
    pub connected: bool,
    pub ice: Vec<IceConnectionState>,
    pub participants: Vec<ParticipantInfo>,
    /// The last `Speakers` event.
    pub speakers: Vec<ParticipantId>,
    /// The RFC 6464 level its microphone packets carry (dBov; −127 = silence).
    pub audio_level: i8,
    /// How long its encoder takes: a video frame is sent this long after its capture (its
    /// RTP time and sender reports say when it was captured); audio goes at once.
    pub encode_delay: Duration,
    /// The join answer, then every `update` offer.
    pub answer: String,
    pub offers: Vec<String>,
    pub failed_at: Option<Instant>,
    /// A moderator took it out: (their name, the whole room ended).
    pub removed: Option<(String, bool)>,
    pub frames: Vec<Frame>,
    pub keyframe_requests: Vec<Instant>,
    pending_offer: Option<SdpPendingOffer>,
    send_keyframe: bool,
    next_video: Option<Instant>,
    next_audio: Option<Instant>,
    rtp_time: u64,
    audio_time: u64,
    timeout: Instant,
}

struct InFlight {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

pub struct Lab {
    pub now: Instant,
    pub start: Instant,
    pub core: SfuCore,
    pub server: SocketAddr,
    pub clients: Vec<Client>,
    pub taps: Vec<TapPacket>,
    pub taps_ended: usize,
    network: VecDeque<InFlight>,
    answers: VecDeque<(Instant, ParticipantId, Round, Result<String, String>)>,
    ids: IdGen,
    core_wake: Instant,
    /// What the next joins ask of their room.
    pub join_options: JoinOptions,
}

impl Lab {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    pub fn with_config(edit: impl FnOnce(&mut SfuConfig)) -> Self {
        log_init();
        let server: SocketAddr = SERVER.parse().unwrap();
        let mut config = SfuConfig::new(NetConfig {
            bind_ip: server.ip(),
            public_ip: None,
        });
        edit(&mut config);
        let now = Instant::now();
        Lab {
            now,
            start: now,
            core: SfuCore::new(config, server, 42, now),
            server,
            clients: Vec::new(),
            taps: Vec::new(),
            taps_ended: 0,
            network: VecDeque::new(),
            answers: VecDeque::new(),
            ids: IdGen::new(0, 7),
            core_wake: now,
            join_options: JoinOptions::default(),
        }
    }

    /// Adds a client (not joined yet); returns its index.
    pub fn client(&mut self, name: &str, publishes: bool) -> usize {
        let n = self.clients.len() as u8 + 1;
        let local: SocketAddr = format!("10.0.0.{n}:5000").parse().unwrap();
        let public: SocketAddr = format!("203.0.113.{n}:6000").parse().unwrap();
        let mut rtc = Rtc::new(self.now);
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        self.clients.push(Client {
            name: name.to_owned(),
            rtc,
            local,
            public,
            id: None,
            alive: true,
            cut: false,
            updates: Updates::Answer,
            publishes,
            answers_keyframe_requests: true,
            speakers: Vec::new(),
            audio_level: -127,
            encode_delay: Duration::ZERO,
            loss_one_in: 0,
            sent_or_received: 0,
            downlink_bps: None,
            downlink_free_at: None,
            remb_bps: None,
            next_remb: None,
            video_paused: Vec::new(),
            mids: Vec::new(),
            screen: None,
            connected: false,
            ice: Vec::new(),
            participants: Vec::new(),
            answer: String::new(),
            offers: Vec::new(),
            failed_at: None,
            removed: None,
            frames: Vec::new(),
            keyframe_requests: Vec::new(),
            pending_offer: None,
            send_keyframe: true,
            next_video: None,
            next_audio: None,
            rtp_time: 0,
            // One step behind the first video frame's 3600 at 90 kHz (1920 at 48 kHz): both
            // start at the same capture.
            audio_time: 960,
            timeout: self.now,
        });
        self.clients.len() - 1
    }

    /// The client's offer (audio + video, sent on if it publishes) into `join`; the answer
    /// is applied and the core told it was delivered.
    pub fn join(&mut self, c: usize, room: &str) -> Result<ParticipantId, SfuError> {
        let offer = self.offer(c);
        self.join_with_offer(c, room, offer)
    }

    pub fn offer(&mut self, c: usize) -> String {
        let client = &mut self.clients[c];
        let direction = if client.publishes {
            Direction::SendRecv
        } else {
            Direction::RecvOnly
        };
        let mut api = client.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
        let video = api.add_media(MediaKind::Video, direction, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        client.mids = vec![(audio, MediaKind::Audio), (video, MediaKind::Video)];
        client.pending_offer = Some(pending);
        offer.to_sdp_string()
    }

    pub fn join_with_offer(
        &mut self,
        c: usize,
        room: &str,
        offer: String,
    ) -> Result<ParticipantId, SfuError> {
        let id = self.ids.participant();
        let reply = self.core.handle_command(
            self.now,
            Command::Join {
                id,
                room: room.into(),
                name: self.clients[c].name.clone(),
                offer,
                options: self.join_options,
            },
        )?;
        let Reply::Joined(answer) = reply else {
            panic!("join replied {reply:?}")
        };
        let client = &mut self.clients[c];
        let pending = client.pending_offer.take().expect("an offer was made");
        let sdp = SdpAnswer::from_sdp_string(&answer.sdp).unwrap();
        client.rtc.sdp_api().accept_answer(pending, sdp).unwrap();
        client.id = Some(id);
        client.participants = answer.participants;
        client.answer = answer.sdp;
        client.failed_at = None;
        self.core
            .handle_command(self.now, Command::Ready { id })
            .unwrap();
        self.poll_client(c);
        Ok(id)
    }

    /// A command, and what it makes the core say at once.
    pub fn command(&mut self, command: Command) -> Result<Reply, SfuError> {
        let reply = self.core.handle_command(self.now, command);
        self.drain_core();
        reply
    }

    pub fn leave(&mut self, c: usize) {
        let id = self.clients[c].id.take().expect("joined");
        self.command(Command::Leave { id }).unwrap();
        self.clients[c].alive = false;
    }

    pub fn id(&self, c: usize) -> ParticipantId {
        self.clients[c].id.expect("joined")
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.now < until {
            self.step(until);
        }
    }

    /// Runs until `done` holds (checked after every step); panics after `limit`.
    pub fn run_until(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Lab) -> bool,
    ) -> Duration {
        let started = self.now;
        let until = self.now + limit;
        while !done(self) {
            assert!(
                self.now < until,
                "{what}: not within {limit:?} ({:?} into the test)",
                self.elapsed()
            );
            self.step(until);
        }
        self.now - started
    }

    /// Video frames client `c` received after `since`.
    pub fn video_frames_since(&self, c: usize, since: Instant) -> usize {
        self.clients[c]
            .frames
            .iter()
            .filter(|f| f.video && f.at > since)
            .count()
    }

    pub fn audio_frames_since(&self, c: usize, since: Instant) -> usize {
        self.clients[c]
            .frames
            .iter()
            .filter(|f| !f.video && f.at > since)
            .count()
    }

    /// One step: everything due now, then time moves to the next thing due (≤ `limit`).
    fn step(&mut self, limit: Instant) {
        let now = self.now;
        // The network.
        while self.network.front().is_some_and(|d| d.at <= now) {
            let datagram = self.network.pop_front().unwrap();
            self.deliver(datagram);
        }
        // Pages answering updates.
        while self.answers.front().is_some_and(|a| a.0 <= now) {
            let (_, id, round, answer) = self.answers.pop_front().unwrap();
            let _ = self.command(Command::Answer { id, round, answer });
        }
        // Clients' own timers and media.
        for c in 0..self.clients.len() {
            if !self.clients[c].alive {
                continue;
            }
            if self.clients[c].timeout <= now {
                let _ = self.clients[c].rtc.handle_input(Input::Timeout(now));
                self.poll_client(c);
            }
            self.report_remb(c);
            self.send_media(c);
        }
        if self.core_wake <= now {
            self.core.handle_timeout(now);
        }
        self.drain_core();
        // Next.
        let mut next = limit.min(self.core_wake);
        next = self.network.front().map_or(next, |d| next.min(d.at));
        next = self.answers.front().map_or(next, |a| next.min(a.0));
        for client in self.clients.iter().filter(|c| c.alive) {
            next = next.min(client.timeout);
            let remb = client.remb_bps.and(client.next_remb);
            for t in [client.next_video, client.next_audio, remb]
                .into_iter()
                .flatten()
            {
                next = next.min(t);
            }
        }
        // str0m may ask for `now` again; time must still move.
        let next = if next > now {
            next
        } else {
            now + Duration::from_micros(100)
        };
        self.now = next.min(limit).max(now);
        if self.now == now {
            self.now = now + Duration::from_micros(100);
        }
    }

    /// A REMB on each video the client has received, when one is due.
    fn report_remb(&mut self, c: usize) {
        let now = self.now;
        let client = &mut self.clients[c];
        let Some(bps) = client.remb_bps else {
            return;
        };
        if client.next_remb.is_some_and(|t| t > now) {
            return;
        }
        client.next_remb = Some(now + REMB_EVERY);
        let mut mids: Vec<Mid> = client
            .frames
            .iter()
            .filter(|f| f.video)
            .map(|f| f.mid)
            .collect();
        mids.sort_unstable();
        mids.dedup();
        for mid in mids {
            if let Some(stream) = client.rtc.direct_api().stream_rx_by_mid(mid, None) {
                stream.request_remb(Bitrate::bps(bps));
            }
        }
        let _ = client.rtc.handle_input(Input::Timeout(now));
        self.poll_client(c);
    }

    fn deliver(&mut self, datagram: InFlight) {
        if datagram.to == self.server {
            self.core
                .handle_datagram(self.now, datagram.from, &datagram.data);
            return;
        }
        let Some(c) = self
            .clients
            .iter()
            .position(|c| c.alive && !c.cut && c.public == datagram.to)
        else {
            return; // an old NAT mapping, a vanished client: lost
        };
        let client = &mut self.clients[c];
        let receive =
            Receive::new(Protocol::Udp, datagram.from, client.local, &datagram.data).unwrap();
        let _ = client.rtc.handle_input(Input::Receive(self.now, receive));
        self.poll_client(c);
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        if let Some(client) = self
            .clients
            .iter_mut()
            .find(|c| c.loss_one_in > 0 && (c.public == from || c.public == to))
        {
            client.sent_or_received += 1;
            if client.sent_or_received % client.loss_one_in == 0 {
                return;
            }
        }
        let mut at = self.now + LATENCY;
        if let Some(client) = self.clients.iter_mut().find(|c| c.public == to) {
            if let Some(bps) = client.downlink_bps {
                let start = client
                    .downlink_free_at
                    .map_or(self.now, |t| t.max(self.now));
                if start - self.now > QUEUE_LIMIT {
                    return; // tail drop
                }
                let done = start + Duration::from_micros(data.len() as u64 * 8_000_000 / bps);
                client.downlink_free_at = Some(done);
                at = done + LATENCY;
            }
        }
        // In order of arrival (a capped link delays some).
        let position = self.network.partition_point(|d| d.at <= at);
        self.network
            .insert(position, InFlight { at, from, to, data });
    }

    fn drain_core(&mut self) {
        loop {
            match self.core.poll_output() {
                Output::Transmit(t) => self.send(self.server, t.destination, t.contents),
                Output::Event { participant, event } => self.event(participant, event),
                Output::Tap(TapOutput::Packet(packet)) => self.taps.push(packet),
                Output::Tap(TapOutput::Ended(_)) => self.taps_ended += 1,
                Output::Timeout(at) => {
                    self.core_wake = at;
                    return;
                }
            }
        }
    }

    /// What the signaling side of participant `id` does with a core event.
    fn event(&mut self, id: ParticipantId, event: ParticipantEvent) {
        let Some(c) = self.clients.iter().position(|c| c.id == Some(id)) else {
            return;
        };
        match event {
            ParticipantEvent::Update { round, sdp } => {
                let client = &mut self.clients[c];
                client.offers.push(sdp.clone());
                let answer = match client.updates {
                    Updates::Ignore => return,
                    Updates::Refuse => Err("negotiation_failed".to_owned()),
                    Updates::Answer => {
                        let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                        let answer = client.rtc.sdp_api().accept_offer(offer).unwrap();
                        Ok(answer.to_sdp_string())
                    }
                };
                self.answers
                    .push_back((self.now + ANSWER_DELAY, id, round, answer));
                self.poll_client(c);
            }
            ParticipantEvent::Participants(list) => self.clients[c].participants = list,
            ParticipantEvent::PublishLayers(_) => {}
            ParticipantEvent::VideoPaused {
                publisher,
                paused,
                source,
            } => {
                let now = self.now;
                self.clients[c]
                    .video_paused
                    .push((now, publisher, paused, source))
            }
            ParticipantEvent::Speakers(list) => {
                self.clients[c].speakers = list.iter().map(|s| s.id).collect()
            }
            ParticipantEvent::Removed { by, ended } => {
                // What the signaling side does: tell the page, and leave (a no-op for the
                // core, which already took the participant out).
                self.clients[c].removed = Some((by, ended));
                self.clients[c].id = None;
                let _ = self.command(Command::Leave { id });
            }
            ParticipantEvent::Failed => {
                // What the signaling side does: leave (the page may join again).
                self.clients[c].failed_at = Some(self.now);
                self.clients[c].id = None;
                let _ = self.command(Command::Leave { id });
            }
        }
    }

    fn poll_client(&mut self, c: usize) {
        loop {
            let client = &mut self.clients[c];
            if !client.alive {
                return;
            }
            let output = match client.rtc.poll_output() {
                Ok(output) => output,
                Err(error) => panic!("{}: {error}", client.name),
            };
            match output {
                RtcOutput::Timeout(at) => {
                    client.timeout = at;
                    return;
                }
                RtcOutput::Transmit(t) => {
                    if !client.cut {
                        let (from, to) = (client.public, t.destination);
                        self.send(from, to, t.contents.into());
                    }
                }
                RtcOutput::Event(event) => self.client_event(c, event),
            }
        }
    }

    fn client_event(&mut self, c: usize, event: Event) {
        let now = self.now;
        let client = &mut self.clients[c];
        match event {
            Event::Connected => {
                client.connected = true;
                if client.publishes {
                    client.next_video = Some(now);
                    client.next_audio = Some(now);
                }
            }
            Event::IceConnectionStateChange(state) => client.ice.push(state),
            // Only the screen m-line is one the server offers to receive on.
            Event::MediaAdded(media)
                if media.direction == Direction::SendOnly
                    && !client.mids.iter().any(|(mid, _)| *mid == media.mid) =>
            {
                client.screen = Some(media.mid);
                client.send_keyframe = true;
            }
            Event::KeyframeRequest(_) => {
                client.keyframe_requests.push(now);
                client.send_keyframe |= client.answers_keyframe_requests;
            }
            Event::MediaData(data) => client.frames.push(Frame {
                at: now,
                mid: data.mid,
                keyframe: data.is_keyframe(),
                video: data.params.spec().codec == Codec::Vp8,
                time: data.time,
                sender_info: data.last_sender_info,
            }),
            _ => {}
        }
    }

    /// A publishing client's camera and microphone: VP8 frames at 25 fps (a keyframe only
    /// at the start and when asked, as browsers do) and Opus every 20 ms.
    fn send_media(&mut self, c: usize) {
        let now = self.now;
        let client = &mut self.clients[c];
        if !client.publishes || !client.connected {
            return;
        }
        let mut wrote = false;
        if client.next_video.is_some_and(|t| t <= now) {
            client.next_video = Some(now + VIDEO_FRAME);
            client.rtp_time += 3600;
            let keyframe = std::mem::take(&mut client.send_keyframe);
            // VP8 frame tag: bit 0 clear = keyframe; a keyframe spans several packets.
            let mut frame = vec![0u8; if keyframe { 3000 } else { 600 }];
            frame[0] = if keyframe { 0x10 } else { 0x11 };
            let camera = client.mids[1].0;
            for mid in [Some(camera), client.screen].into_iter().flatten() {
                if let Some(writer) = client.rtc.writer(mid) {
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Vp8)
                        .map(|p| p.pt());
                    if let Some(pt) = pt {
                        let time = MediaTime::from_90khz(client.rtp_time);
                        let captured = now - client.encode_delay;
                        let _ = writer.write(pt, captured, time, frame.clone());
                        wrote = true;
                    }
                }
            }
        }
        if client.next_audio.is_some_and(|t| t <= now) {
            client.next_audio = Some(now + AUDIO_FRAME);
            let mid = client.mids[0].0;
            if let Some(writer) = client.rtc.writer(mid) {
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt());
                if let Some(pt) = pt {
                    client.audio_time += 960; // 20 ms at 48 kHz
                    let time =
                        MediaTime::new(client.audio_time, str0m::media::Frequency::FORTY_EIGHT_KHZ);
                    let level = client.audio_level;
                    let _ = writer.audio_level(level, level > -127).write(
                        pt,
                        now,
                        time,
                        vec![0xfc; 60],
                    );
                    wrote = true;
                }
            }
        }
        if wrote {
            let _ = client.rtc.handle_input(Input::Timeout(now));
            self.poll_client(c);
        }
    }
}

/// A helper for the tests: who a client sees in its room, by name.
pub fn names(list: &[ParticipantInfo]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(|p| p.name.clone()).collect();
    names.sort();
    names
}

/// The `a=ice-ufrag` of an SDP.
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
}
