//! One streamed participant's thread: its taps' packets into `media_out`'s live packager,
//! the init segment and parts into its [`LiveStream`], a keyframe asked for per segment.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::RecvTimeoutError,
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use media_out::{
    hls::packager::PackagerConfig,
    recording::{ParticipantRecording, RecordingConfig},
};
use sfu::{ParticipantId, Sfu, TapOutput};

use super::stream::LiveStream;
use crate::taps::{CodecProbe, Taps};

/// A pass at most this often: a part is ready to serve within this of being cut (parts are
/// 200 ms; a pass costs a thread wake-up).
const PASS_EVERY: Duration = Duration::from_millis(20);

pub(super) struct Job {
    pub(super) sfu: Arc<Sfu>,
    pub(super) participant: ParticipantId,
    pub(super) taps: Taps,
    pub(super) stream: Arc<LiveStream>,
    pub(super) stop: Arc<AtomicBool>,
}

impl Job {
    /// Streams until the taps end (the participant left) or the room's live stream stops.
    /// `Err`: the taps were dropped because this thread fell behind.
    pub(super) fn run(self) -> Result<(), &'static str> {
        let span = tracing::info_span!("live", participant = %self.participant);
        let _span = span.enter();
        let result = self.stream();
        self.taps.detach(&self.sfu);
        result
    }

    fn stream(&self) -> Result<(), &'static str> {
        let mut probe = Some(CodecProbe::default());
        let mut live: Option<ParticipantRecording> = None;
        let mut ended = 0;
        let mut last_pass = Instant::now();
        let tapped = self.taps.taps.len();
        let result = loop {
            if let Some(rest) = PASS_EVERY.checked_sub(last_pass.elapsed()) {
                std::thread::sleep(rest);
            }
            last_pass = Instant::now();
            let wait = live
                .as_ref()
                .and_then(ParticipantRecording::deadline)
                .map_or(PASS_EVERY * 10, |d| {
                    d.saturating_duration_since(Instant::now())
                });
            let first = match self.taps.queue.recv_timeout(wait) {
                Ok(output) => Some(output),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) if ended < tapped => break Err("fell_behind"),
                Err(RecvTimeoutError::Disconnected) => break Ok(()),
            };
            let queued = std::iter::from_fn(|| self.taps.queue.try_recv().ok());
            for output in first.into_iter().chain(queued) {
                match output {
                    TapOutput::Ended(_) => ended += 1,
                    TapOutput::Packet(packet) => match (&mut live, &mut probe) {
                        (Some(live), _) => self.taps.feed(live, packet),
                        (None, Some(probe)) => probe.push(packet),
                        (None, None) => {}
                    },
                }
            }
            if self.stop.load(Ordering::Relaxed) || ended >= tapped {
                break Ok(());
            }
            let now = Instant::now();
            if probe.as_ref().is_some_and(|p| p.done(&self.taps.taps, now)) {
                let probed = probe.take().expect("checked").finish();
                if let Some(codec) = &probed.unwritable_video {
                    tracing::warn!(%codec, "video not streamed: HLS players take H.264 (audio only)");
                }
                let anchor = (Instant::now(), SystemTime::now());
                let mut started = ParticipantRecording::live(
                    RecordingConfig::live(),
                    PackagerConfig::default(),
                    probed.video,
                    probed.audio,
                    anchor,
                );
                for packet in probed.held {
                    self.taps.feed(&mut started, packet);
                }
                live = Some(started);
            }
            if let Some(live) = live.as_mut() {
                self.keep_up(live, now);
            }
        };
        if let Some(mut live) = live {
            live.finish();
            self.publish(&mut live);
            self.stream.end(live.live_playlist());
        } else {
            self.stream.end(None);
        }
        result
    }

    /// Packages what is due and hands it to the stream; asks for keyframes.
    fn keep_up(&self, live: &mut ParticipantRecording, now: Instant) {
        live.poll(now);
        self.publish(live);
        if live.take_keyframe_wanted() {
            if let Some(tap) = self.taps.video() {
                self.sfu.tap_keyframe(tap);
            }
        }
    }

    fn publish(&self, live: &mut ParticipantRecording) {
        let init = live.take_bytes();
        if !init.is_empty() {
            let codecs = live.live_codecs().unwrap_or_default();
            tracing::info!(%codecs, "live stream started");
            self.stream.set_init(init, codecs);
        }
        let parts = live.take_parts();
        if let Some(playlist) = live.live_playlist() {
            self.stream.add_parts(parts, playlist);
        }
    }
}
