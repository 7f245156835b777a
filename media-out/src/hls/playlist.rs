//! A Low-Latency HLS media playlist (RFC 8216bis, "HTTP Live Streaming 2nd Edition"): the
//! segments and partial segments of one live stream, the playlist text a player polls, and
//! the answer to a blocking playlist reload (`_HLS_msn`/`_HLS_part`), sans-IO.
//!
//! Segments start on keyframes, about every 2 s (the packager asks for keyframes at that
//! rhythm); each is cut into parts of at most `part_target` (about 200 ms) that a player may
//! fetch before the segment is whole. Every segment carries its `EXT-X-PROGRAM-DATE-TIME`
//! (the wall-clock time of its first frame, from the senders' reports), so a player knows how
//! far behind the capture it plays.
//!
//! Names are relative and never reused within a stream (`s<msn>.m4s`, `p<msn>.<part>.m4s`):
//! with a per-stream random path in front, every part, segment and init segment is
//! immutable, which is what lets a CDN cache them for good (docs/live.md).

use std::{collections::VecDeque, fmt::Write, time::Duration, time::SystemTime};

use crate::clock::iso8601_ms;

/// A blocking request may name a part this far beyond the last one listed (RFC 8216bis
/// 6.2.5.2: the Advance Part Limit).
const ADVANCE_PART_LIMIT: u32 = 3;
/// ... and a segment this far beyond the last one.
const ADVANCE_SEGMENT_LIMIT: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaylistConfig {
    /// The longest a part may be (`EXT-X-PART-INF:PART-TARGET`).
    pub part_target: Duration,
    /// `EXT-X-TARGETDURATION`, whole seconds: no segment may round above it, so it has room
    /// for a keyframe that comes late.
    pub target_duration: u32,
    /// Segments listed (older ones leave the playlist, and the driver drops their bytes).
    pub keep_segments: usize,
}

impl Default for PlaylistConfig {
    fn default() -> Self {
        PlaylistConfig {
            part_target: Duration::from_millis(200),
            target_duration: 4,
            // ~32 s at 2 s each: longer than the skip boundary (6 target durations, 24 s), so
            // delta updates leave something out.
            keep_segments: 16,
        }
    }
}

impl PlaylistConfig {
    /// `PART-HOLD-BACK`: how far from the live edge a player starts, 3 parts (the RFC's
    /// SHOULD; at least 2 is a MUST).
    pub fn part_hold_back(&self) -> Duration {
        self.part_target * 3
    }

    /// `CAN-SKIP-UNTIL`: segments older than this from the end may be skipped in a delta
    /// update (at least six target durations, RFC 8216bis 4.4.3.8).
    pub fn skip_boundary(&self) -> Duration {
        Duration::from_secs(6 * u64::from(self.target_duration))
    }

    /// How long a blocking reload may be held before the server gives up (three target
    /// durations, RFC 8216bis 6.2.5.2).
    pub fn hold_limit(&self) -> Duration {
        Duration::from_secs(3 * u64::from(self.target_duration))
    }

    /// Parts are listed for the segments this close to the live edge (three target
    /// durations: a player may still be fetching them).
    fn parts_window(&self) -> Duration {
        Duration::from_secs(3 * u64::from(self.target_duration))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub duration: Duration,
    /// It starts with a keyframe: a player may start decoding here.
    pub independent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub msn: u64,
    /// Wall-clock time of its first frame.
    pub program_date: SystemTime,
    pub parts: Vec<Part>,
    /// No more parts will come: it is listed whole (`EXTINF`).
    pub complete: bool,
}

impl Segment {
    pub fn duration(&self) -> Duration {
        self.parts.iter().map(|p| p.duration).sum()
    }
}

/// What a blocking playlist request gets (RFC 8216bis 6.2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// The playlist holds what was asked for: answer now.
    Ready,
    /// Not yet: hold the request until the playlist changes (at most `hold_limit`).
    Wait,
    /// Further ahead than a player following the stream asks: 400 Bad Request.
    TooFar,
}

/// Where a part is: `(msn, part index)`.
pub type PartPosition = (u64, u32);

#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    config: PlaylistConfig,
    segments: VecDeque<Segment>,
    /// The next segment's number.
    next_msn: u64,
    ended: bool,
}

impl MediaPlaylist {
    pub fn new(config: PlaylistConfig) -> Self {
        MediaPlaylist {
            config,
            segments: VecDeque::new(),
            next_msn: 0,
            ended: false,
        }
    }

    pub fn config(&self) -> &PlaylistConfig {
        &self.config
    }

    /// A new part was packaged: it opens a new segment when `starts_segment` (a keyframe far
    /// enough from the last segment's start), which closes the one before. Returns where it
    /// is, and the segments that left the playlist (their bytes can go).
    pub fn push_part(
        &mut self,
        part: Part,
        starts_segment: bool,
        program_date: SystemTime,
    ) -> (PartPosition, Vec<u64>) {
        let open = self.segments.back().is_some_and(|s| !s.complete);
        if starts_segment || !open {
            if let Some(last) = self.segments.back_mut() {
                last.complete = true;
            }
            self.segments.push_back(Segment {
                msn: self.next_msn,
                program_date,
                parts: Vec::new(),
                complete: false,
            });
            self.next_msn += 1;
        }
        let segment = self.segments.back_mut().expect("a segment is open");
        segment.parts.push(part);
        let position = (segment.msn, segment.parts.len() as u32 - 1);
        let mut dropped = Vec::new();
        while self.segments.len() > self.config.keep_segments {
            dropped.extend(self.segments.pop_front().map(|s| s.msn));
        }
        (position, dropped)
    }

    /// The stream ended: the open segment is closed and the playlist says `EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        if let Some(last) = self.segments.back_mut() {
            last.complete = true;
        }
        self.ended = true;
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The segment `msn`, while listed.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments.get(msn.checked_sub(first)? as usize)
    }

    /// The last part packaged.
    pub fn last_part(&self) -> Option<PartPosition> {
        let last = self.segments.back()?;
        Some((last.msn, last.parts.len().checked_sub(1)? as u32))
    }

    /// The part the playlist hints at (`EXT-X-PRELOAD-HINT`): the next one to come.
    pub fn next_part(&self) -> PartPosition {
        match self.segments.back() {
            Some(last) if !last.complete => (last.msn, last.parts.len() as u32),
            _ => (self.next_msn, 0),
        }
    }

    /// The answer to a request for the playlist holding segment `msn` whole (`part: None`)
    /// or its part `part`, "or later" (RFC 8216bis 6.2.5.2).
    pub fn blocking(&self, msn: u64, part: Option<u32>) -> Blocking {
        let Some(last) = self.segments.back() else {
            return if self.ended {
                Blocking::Ready
            } else if msn <= ADVANCE_SEGMENT_LIMIT {
                Blocking::Wait
            } else {
                Blocking::TooFar
            };
        };
        if msn > last.msn + ADVANCE_SEGMENT_LIMIT {
            return Blocking::TooFar;
        }
        if self.ended {
            return Blocking::Ready;
        }
        let ready = match part {
            // A whole segment `msn` or a later one.
            None => self
                .segments
                .iter()
                .rev()
                .any(|s| s.complete && s.msn >= msn),
            Some(part) => {
                if msn == last.msn && part >= last.parts.len() as u32 + ADVANCE_PART_LIMIT {
                    return Blocking::TooFar;
                }
                match self.segment(msn) {
                    // Asked for a part of a segment that closed with fewer parts: any part
                    // of a later segment is "later".
                    Some(s) if s.complete && part >= s.parts.len() as u32 => last.msn > msn,
                    Some(s) => part < s.parts.len() as u32,
                    // Gone from the playlist already: it holds later parts.
                    None => msn < self.segments.front().map_or(0, |s| s.msn),
                }
            }
        };
        if ready {
            Blocking::Ready
        } else {
            Blocking::Wait
        }
    }

    /// The playlist text; `skip`: a delta update (`_HLS_skip=YES`) that leaves out the
    /// segments older than the skip boundary.
    pub fn render(&self, init_uri: &str, skip: bool) -> String {
        let config = &self.config;
        let mut out = String::with_capacity(2048);
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:9");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", config.target_duration);
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.3}",
            config.skip_boundary().as_secs_f64(),
            config.part_hold_back().as_secs_f64()
        );
        let _ = writeln!(
            out,
            "#EXT-X-PART-INF:PART-TARGET={:.3}",
            config.part_target.as_secs_f64()
        );
        let first = self.segments.front().map_or(self.next_msn, |s| s.msn);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
        let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{init_uri}\"");
        let total: Duration = self.segments.iter().map(Segment::duration).sum();
        let skipped = if skip { self.skippable(total) } else { 0 };
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let mut before = Duration::ZERO;
        for segment in &self.segments {
            let duration = segment.duration();
            let starts = before;
            before += duration;
            if (segment.msn - first) < skipped as u64 {
                continue;
            }
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                iso8601_ms(segment.program_date)
            );
            // Parts near the live edge: the segments a player may still be fetching by parts.
            if !segment.complete || total.saturating_sub(starts + duration) < config.parts_window()
            {
                for (i, part) in segment.parts.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "#EXT-X-PART:DURATION={:.5},URI=\"{}\"{}",
                        part.duration.as_secs_f64(),
                        part_uri(segment.msn, i as u32),
                        if part.independent {
                            ",INDEPENDENT=YES"
                        } else {
                            ""
                        }
                    );
                }
            }
            if segment.complete {
                let _ = writeln!(out, "#EXTINF:{:.5},", duration.as_secs_f64());
                let _ = writeln!(out, "{}", segment_uri(segment.msn));
            }
        }
        if self.ended {
            let _ = writeln!(out, "#EXT-X-ENDLIST");
        } else {
            let (msn, part) = self.next_part();
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                part_uri(msn, part)
            );
        }
        out
    }

    /// How many segments from the start a delta update leaves out: those that end before
    /// the skip boundary (measured back from the end of the playlist), never an open one.
    fn skippable(&self, total: Duration) -> usize {
        let boundary = total.saturating_sub(self.config.skip_boundary());
        let mut end = Duration::ZERO;
        let mut count = 0;
        for segment in &self.segments {
            end += segment.duration();
            if end > boundary || !segment.complete {
                break;
            }
            count += 1;
        }
        count
    }
}

pub fn segment_uri(msn: u64) -> String {
    format!("s{msn}.m4s")
}

pub fn part_uri(msn: u64, part: u32) -> String {
    format!("p{msn}.{part}.m4s")
}

/// What a stream's file name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Segment(u64),
    Part(u64, u32),
}

/// `s<msn>.m4s` or `p<msn>.<part>.m4s` (digits only): anything else is no name of ours.
pub fn parse_uri(name: &str) -> Option<Resource> {
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let stem = name.strip_suffix(".m4s")?;
    if let Some(msn) = stem.strip_prefix('s') {
        return Some(Resource::Segment(number(msn)?));
    }
    let (msn, part) = stem.strip_prefix('p')?.split_once('.')?;
    Some(Resource::Part(
        number(msn)?,
        u32::try_from(number(part)?).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_858_200_000 + ms)
    }

    /// `segments` segments of `parts` 200 ms parts each, the first part of each independent.
    fn live(segments: u64, parts: u32) -> MediaPlaylist {
        let mut playlist = MediaPlaylist::new(PlaylistConfig::default());
        for s in 0..segments {
            for p in 0..parts {
                let part = Part {
                    duration: 200 * MS,
                    independent: p == 0,
                };
                let t = (s * u64::from(parts) + u64::from(p)) * 200;
                playlist.push_part(part, p == 0, at(t));
            }
        }
        playlist
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn a_live_playlist_lists_segments_parts_and_the_next_part() {
        // Two whole segments of 2 s and three parts of the third.
        let mut playlist = live(2, 10);
        for p in 0..3 {
            playlist.push_part(
                Part {
                    duration: 200 * MS,
                    independent: p == 0,
                },
                p == 0,
                at(4000 + p * 200),
            );
        }
        let text = playlist.render("init.mp4", false);
        let lines = lines(&text);
        assert_eq!(
            &lines[..9],
            [
                "#EXTM3U",
                "#EXT-X-VERSION:9",
                "#EXT-X-TARGETDURATION:4",
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=24.0,PART-HOLD-BACK=0.600",
                "#EXT-X-PART-INF:PART-TARGET=0.200",
                "#EXT-X-MEDIA-SEQUENCE:0",
                "#EXT-X-INDEPENDENT-SEGMENTS",
                "#EXT-X-MAP:URI=\"init.mp4\"",
                "#EXT-X-PROGRAM-DATE-TIME:2026-11-28T09:30:00.000Z",
            ]
        );
        assert_eq!(
            lines[9],
            "#EXT-X-PART:DURATION=0.20000,URI=\"p0.0.m4s\",INDEPENDENT=YES"
        );
        assert_eq!(lines[10], "#EXT-X-PART:DURATION=0.20000,URI=\"p0.1.m4s\"");
        let extinf: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("#EXTINF"))
            .collect();
        assert_eq!(extinf, ["#EXTINF:2.00000,", "#EXTINF:2.00000,"]);
        assert!(text.contains(
            "#EXTINF:2.00000,\ns1.m4s\n#EXT-X-PROGRAM-DATE-TIME:2026-11-28T09:30:04.000Z\n"
        ));
        // The open segment: its parts, no EXTINF, then the hint at its next part.
        assert!(text.ends_with(
            "#EXT-X-PART:DURATION=0.20000,URI=\"p2.2.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.3.m4s\"\n"
        ));
        assert_eq!(playlist.last_part(), Some((2, 2)));
        // Every part of a whole segment adds up to its EXTINF.
        let parts = lines
            .iter()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .count();
        assert_eq!(parts, 23);
    }

    #[test]
    fn old_segments_leave_and_old_parts_are_no_longer_listed() {
        let mut playlist = MediaPlaylist::new(PlaylistConfig::default());
        let mut dropped = Vec::new();
        for s in 0..20u64 {
            for p in 0..10u32 {
                let part = Part {
                    duration: 200 * MS,
                    independent: p == 0,
                };
                dropped.extend(playlist.push_part(part, p == 0, at(s * 2000)).1);
            }
        }
        assert_eq!(dropped, [0, 1, 2, 3]);
        let text = playlist.render("init.mp4", false);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:4\n"));
        assert!(!text.contains("s3.m4s"));
        assert_eq!(
            text.matches("#EXTINF").count(),
            15,
            "16 kept, the last still open"
        );
        // Parts: only the segments ending within 12 s of the end, and the open one.
        assert!(!text.contains("URI=\"p13."), "{text}");
        assert!(text.contains("URI=\"p14.0.m4s\""));
        assert!(text.contains("URI=\"p19.9.m4s\""));
    }

    #[test]
    fn a_delta_update_skips_what_is_older_than_the_boundary() {
        let playlist = live(16, 10);
        // 16 segments of 2 s, the last still open: the boundary is 24 s before the end, at
        // 8 s, and the first 4 segments end by then.
        let text = playlist.render("init.mp4", true);
        assert!(text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n"), "{text}");
        assert!(
            text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"),
            "the sequence counts the skipped"
        );
        for msn in 0..4 {
            assert!(!text.contains(&format!("\ns{msn}.m4s\n")), "s{msn} skipped");
        }
        assert!(text.contains("\ns4.m4s\n"));
        let full = playlist.render("init.mp4", false);
        assert!(!full.contains("EXT-X-SKIP"));
        assert!(text.len() < full.len());
        // A short playlist has nothing to skip.
        assert!(!live(3, 10).render("init.mp4", true).contains("EXT-X-SKIP"));
    }

    #[test]
    fn blocking_reloads_wait_for_the_part_asked_for_and_refuse_what_is_far_ahead() {
        let mut playlist = MediaPlaylist::new(PlaylistConfig::default());
        assert_eq!(playlist.blocking(0, Some(0)), Blocking::Wait, "nothing yet");
        assert_eq!(playlist.blocking(3, None), Blocking::TooFar);
        let part = |independent| Part {
            duration: 200 * MS,
            independent,
        };
        playlist.push_part(part(true), true, at(0));
        playlist.push_part(part(false), false, at(200));
        assert_eq!(playlist.blocking(0, Some(1)), Blocking::Ready);
        assert_eq!(
            playlist.blocking(0, Some(2)),
            Blocking::Wait,
            "the next part"
        );
        assert_eq!(playlist.blocking(0, Some(4)), Blocking::Wait);
        assert_eq!(
            playlist.blocking(0, Some(5)),
            Blocking::TooFar,
            "beyond the advance part limit"
        );
        assert_eq!(
            playlist.blocking(0, None),
            Blocking::Wait,
            "segment 0 is not whole yet"
        );
        assert_eq!(playlist.blocking(2, Some(0)), Blocking::Wait);
        assert_eq!(playlist.blocking(3, Some(0)), Blocking::TooFar);
        // Segment 0 closes with 2 parts when segment 1 starts.
        playlist.push_part(part(true), true, at(400));
        assert_eq!(playlist.blocking(0, None), Blocking::Ready);
        assert_eq!(
            playlist.blocking(0, Some(2)),
            Blocking::Ready,
            "a later part is there"
        );
        assert_eq!(playlist.blocking(1, Some(0)), Blocking::Ready);
        assert_eq!(playlist.blocking(1, None), Blocking::Wait);
        assert_eq!(playlist.next_part(), (1, 1));
        playlist.end();
        assert_eq!(
            playlist.blocking(2, Some(0)),
            Blocking::Ready,
            "ended: what there is"
        );
        let text = playlist.render("init.mp4", false);
        assert!(text.ends_with("s1.m4s\n#EXT-X-ENDLIST\n"), "{text}");
        assert!(!text.contains("PRELOAD-HINT"));
    }

    #[test]
    fn segments_that_left_answer_as_later_parts() {
        let playlist = live(20, 10);
        assert_eq!(playlist.segment(3), None);
        assert_eq!(playlist.blocking(1, Some(0)), Blocking::Ready);
        assert_eq!(playlist.segment(4).map(|s| s.msn), Some(4));
        assert_eq!(playlist.segment(4).map(Segment::duration), Some(2000 * MS));
    }

    #[test]
    fn names_go_both_ways_and_nothing_else_parses() {
        assert_eq!(parse_uri(&segment_uri(42)), Some(Resource::Segment(42)));
        assert_eq!(parse_uri(&part_uri(42, 7)), Some(Resource::Part(42, 7)));
        for bad in [
            "s.m4s",
            "p1.m4s",
            "p1..m4s",
            "s-1.m4s",
            "s1.mp4",
            "../s1.m4s",
            "s+1.m4s",
            "p1.99999999999999.m4s",
            "s1234567890123.m4s",
            "init.mp4",
            "",
        ] {
            assert_eq!(parse_uri(bad), None, "{bad}");
        }
    }
}
