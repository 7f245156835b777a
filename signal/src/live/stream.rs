//! One live stream's bytes in memory, as HTTP serves them: its init segment, its parts, its
//! playlist as of the last part, and a way to wait for the next part (blocking playlist
//! reloads and preload-hinted parts). The participant's thread (`job.rs`) writes; any number
//! of requests read.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use axum::body::Bytes;
use media_out::hls::{
    packager::NewPart,
    playlist::{Blocking, MediaPlaylist, PartPosition},
};
use tokio::sync::watch;

/// What a request for a part or segment finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Bytes),
    /// Not there now, but the next part to come: worth waiting for (a preload hint).
    Coming,
    /// Will never be there: beyond the parts of a segment that closed (a preload hint
    /// that did not come true: the next part opened a segment), or gone from the playlist.
    /// An answer every viewer would get: a cache may keep it.
    Never,
    /// Not there, and not the next one either (a request ahead of the stream).
    Missing,
}

/// What a playlist request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistAnswer {
    Ready(String),
    Wait,
    /// Further ahead than a player following the stream would ask (400).
    TooFar,
    /// No part yet: nothing to list.
    NotStarted,
}

#[derive(Default)]
struct Content {
    init: Option<Bytes>,
    codecs: Option<String>,
    playlist: Option<MediaPlaylist>,
    parts: HashMap<PartPosition, Bytes>,
    /// Ended, even if it never started (its publisher left before the first part).
    ended: bool,
}

pub struct LiveStream {
    content: Mutex<Content>,
    /// Bumped at every change: waiting requests look again.
    changes: watch::Sender<u64>,
}

impl Default for LiveStream {
    fn default() -> Self {
        LiveStream {
            content: Mutex::new(Content::default()),
            changes: watch::channel(0).0,
        }
    }
}

impl LiveStream {
    fn content(&self) -> MutexGuard<'_, Content> {
        self.content.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|version| *version += 1);
    }

    pub fn set_init(&self, init: Vec<u8>, codecs: String) {
        let mut content = self.content();
        content.init = Some(Bytes::from(init));
        content.codecs = Some(codecs);
    }

    /// Parts just packaged, and the playlist that lists them.
    pub fn add_parts(&self, parts: Vec<NewPart>, playlist: &MediaPlaylist) {
        if parts.is_empty() {
            return;
        }
        {
            let mut content = self.content();
            for part in parts {
                content.parts.insert(part.position, Bytes::from(part.bytes));
                for msn in part.gone {
                    content.parts.retain(|(m, _), _| *m != msn);
                }
            }
            content.playlist = Some(playlist.clone());
        }
        self.changed();
    }

    /// The stream ended (its publisher left, or the room stopped being live): the playlist
    /// says so, and waiting requests are answered.
    pub fn end(&self, playlist: Option<&MediaPlaylist>) {
        {
            let mut content = self.content();
            let mut last = playlist.cloned().or_else(|| content.playlist.take());
            if let Some(last) = last.as_mut() {
                last.end();
            }
            content.playlist = last;
            content.ended = true;
        }
        self.changed();
    }

    pub fn init(&self) -> Option<Bytes> {
        self.content().init.clone()
    }

    pub fn codecs(&self) -> Option<String> {
        self.content().codecs.clone()
    }

    /// Whether players can start on it: its first segment is complete (hls.js refuses a
    /// playlist without one, and tries again only a second later).
    pub fn ready(&self) -> bool {
        self.content()
            .playlist
            .as_ref()
            .is_some_and(|p| p.segments().any(|s| s.complete))
    }

    /// Whether it ended.
    pub fn ended(&self) -> bool {
        self.content().ended
    }

    /// The playlist for a request naming `block` (`_HLS_msn`, `_HLS_part`), or none.
    pub fn playlist(&self, block: Option<(u64, Option<u32>)>, skip: bool) -> PlaylistAnswer {
        let content = self.content();
        let Some(playlist) = content.playlist.as_ref() else {
            return match block {
                Some((msn, _)) if msn > 2 => PlaylistAnswer::TooFar,
                _ => PlaylistAnswer::NotStarted,
            };
        };
        match block.map(|(msn, part)| playlist.blocking(msn, part)) {
            None | Some(Blocking::Ready) => PlaylistAnswer::Ready(playlist.render(INIT, skip)),
            Some(Blocking::Wait) => PlaylistAnswer::Wait,
            Some(Blocking::TooFar) => PlaylistAnswer::TooFar,
        }
    }

    /// The multivariant playlist: one variant, this stream, with its codecs and bit rate. A
    /// player given it loads the media playlist at once (hls.js given the media playlist
    /// itself waits a target duration before its first reload); `None` before the stream
    /// started.
    pub fn multivariant(&self) -> Option<String> {
        let content = self.content();
        let codecs = content.codecs.as_deref()?;
        let playlist = content.playlist.as_ref()?;
        let seconds: f64 = playlist
            .segments()
            .map(|s| s.duration().as_secs_f64())
            .sum();
        let bytes: usize = content.parts.values().map(Bytes::len).sum();
        // What the parts held show, with room above it (BANDWIDTH is a peak); at least
        // 100 kbit/s.
        let measured = match seconds > 0.0 {
            true => bytes as f64 * 8.0 / seconds * 1.5,
            false => 0.0,
        };
        let bandwidth = ((measured / 100_000.0).ceil() as u64).max(1) * 100_000;
        Some(format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{codecs}\"\n{MEDIA_PLAYLIST}\n"
        ))
    }

    /// Part `position`.
    pub fn part(&self, position: PartPosition) -> Lookup {
        let content = self.content();
        if let Some(bytes) = content.parts.get(&position) {
            return Lookup::Found(bytes.clone());
        }
        let (msn, index) = position;
        match content.playlist.as_ref() {
            Some(playlist) if playlist.next_part() == position && !playlist.ended() => {
                Lookup::Coming
            }
            Some(playlist) => match playlist.segment(msn) {
                Some(segment) if segment.complete && index as usize >= segment.parts.len() => {
                    Lookup::Never
                }
                Some(_) => Lookup::Missing,
                None if playlist.ended() => Lookup::Never,
                None => match playlist.segments().next() {
                    Some(first) if msn < first.msn => Lookup::Never,
                    _ => Lookup::Missing,
                },
            },
            None if content.ended => Lookup::Never,
            // Before the first part, the first one is the hint.
            None if position == (0, 0) => Lookup::Coming,
            None => Lookup::Missing,
        }
    }

    /// Segment `msn` whole: its parts one after the other, once it is complete.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        let content = self.content();
        let segment = content.playlist.as_ref()?.segment(msn)?;
        if !segment.complete {
            return None;
        }
        let parts: Vec<&Bytes> = (0..segment.parts.len() as u32)
            .map(|part| content.parts.get(&(msn, part)))
            .collect::<Option<_>>()?;
        let mut whole = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            whole.extend_from_slice(part);
        }
        Some(Bytes::from(whole))
    }

    /// A watcher to take *before* looking, so that a change in between is not missed.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Waits until the stream `watcher` watches changes, at most `limit`; `false`: it did not.
pub async fn wait_change(mut watcher: watch::Receiver<u64>, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, watcher.changed()).await,
        Ok(Ok(()))
    )
}

/// The init segment's name beside the playlist.
pub const INIT: &str = "init.mp4";
/// The media playlist's name, and the multivariant playlist's that names it.
pub const MEDIA_PLAYLIST: &str = "index.m3u8";
pub const MULTIVARIANT_PLAYLIST: &str = "main.m3u8";

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use media_out::hls::playlist::{Part, PlaylistConfig};

    use super::*;

    const PART: Duration = Duration::from_millis(200);

    /// A playlist and the parts it lists, as the packager would hand them over.
    fn push(
        playlist: &mut MediaPlaylist,
        stream: &LiveStream,
        starts_segment: bool,
        byte: u8,
    ) -> PartPosition {
        let part = Part {
            duration: PART,
            independent: starts_segment,
        };
        let (position, gone) = playlist.push_part(part, starts_segment, SystemTime::UNIX_EPOCH);
        let new = NewPart {
            position,
            bytes: vec![byte; 4],
            gone,
        };
        stream.add_parts(vec![new], playlist);
        position
    }

    #[test]
    fn parts_segments_and_the_preload_hint() {
        let stream = LiveStream::default();
        assert_eq!(
            stream.part((0, 0)),
            Lookup::Coming,
            "the first part is hinted"
        );
        assert_eq!(stream.part((0, 1)), Lookup::Missing);
        assert_eq!(stream.playlist(None, false), PlaylistAnswer::NotStarted);
        let never = LiveStream::default();
        never.end(None);
        assert!(never.ended(), "a stream that never started ends too");
        assert_eq!(never.part((0, 0)), Lookup::Never);
        let mut playlist = MediaPlaylist::new(PlaylistConfig::default());
        push(&mut playlist, &stream, true, 1);
        push(&mut playlist, &stream, false, 2);
        assert_eq!(stream.part((0, 1)), Lookup::Found(Bytes::from(vec![2; 4])));
        assert_eq!(stream.part((0, 2)), Lookup::Coming);
        assert_eq!(
            stream.part((0, 3)),
            Lookup::Missing,
            "only the next one is waited for"
        );
        assert_eq!(stream.segment(0), None, "segment 0 is still open");
        assert!(
            !stream.ready(),
            "no complete segment for a player to start on"
        );
        push(&mut playlist, &stream, true, 3);
        assert!(stream.ready());
        // The hint (0, 2) did not come true: segment 1 opened instead, and a cache may say so.
        assert_eq!(stream.part((0, 2)), Lookup::Never);
        let mut whole = vec![1; 4];
        whole.extend([2; 4]);
        assert_eq!(stream.segment(0), Some(Bytes::from(whole)));
        assert_eq!(stream.part((1, 1)), Lookup::Coming);
        stream.end(None);
        assert_eq!(
            stream.part((1, 1)),
            Lookup::Never,
            "nothing comes after the end"
        );
        let PlaylistAnswer::Ready(text) = stream.playlist(None, false) else {
            panic!("no playlist")
        };
        assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    }

    #[test]
    fn the_multivariant_playlist_names_the_media_playlist_with_codecs_and_a_bit_rate() {
        let stream = LiveStream::default();
        assert_eq!(stream.multivariant(), None, "not before the stream starts");
        stream.set_init(vec![0; 8], "avc1.42c015,opus".into());
        let mut playlist = MediaPlaylist::new(PlaylistConfig::default());
        push(&mut playlist, &stream, true, 1);
        let text = stream.multivariant().unwrap();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=100000,CODECS=\"avc1.42c015,opus\"\nindex.m3u8\n"
        );
    }

    #[test]
    fn blocking_answers_and_segments_leaving_with_their_parts() {
        let stream = LiveStream::default();
        assert_eq!(
            stream.playlist(Some((5, None)), false),
            PlaylistAnswer::TooFar
        );
        let mut playlist = MediaPlaylist::new(PlaylistConfig {
            keep_segments: 2,
            ..PlaylistConfig::default()
        });
        push(&mut playlist, &stream, true, 1);
        assert!(matches!(
            stream.playlist(Some((0, Some(0))), false),
            PlaylistAnswer::Ready(_)
        ));
        assert_eq!(
            stream.playlist(Some((0, Some(1))), false),
            PlaylistAnswer::Wait
        );
        assert_eq!(
            stream.playlist(Some((9, None)), false),
            PlaylistAnswer::TooFar
        );
        push(&mut playlist, &stream, true, 2);
        push(&mut playlist, &stream, true, 3);
        // Segment 0 left the playlist (two are kept): its part is gone too, for good.
        assert_eq!(stream.part((0, 0)), Lookup::Never);
        assert_eq!(stream.part((5, 0)), Lookup::Missing, "ahead of the stream");
        assert_eq!(stream.segment(0), None);
        assert!(matches!(stream.part((2, 0)), Lookup::Found(_)));
    }

    #[tokio::test]
    async fn waiting_requests_wake_on_a_new_part_or_give_up() {
        let stream = std::sync::Arc::new(LiveStream::default());
        let watcher = stream.watch();
        let quiet = wait_change(stream.watch(), Duration::from_millis(20)).await;
        assert!(!quiet, "nothing changed");
        let writer = stream.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut playlist = MediaPlaylist::new(PlaylistConfig::default());
            push(&mut playlist, &writer, true, 1);
        });
        assert!(wait_change(watcher, Duration::from_secs(5)).await);
        assert!(matches!(stream.part((0, 0)), Lookup::Found(_)));
    }
}
