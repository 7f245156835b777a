//! Makes a browser's WebM seekable. Chromium's MediaRecorder writes a live WebM: a Segment
//! and Clusters of unknown size, no Duration, no Cues (Chromium bug 642012, WontFix), so
//! players show no length and cannot seek. This rewrites the file with known sizes, the
//! Duration, a Cues index (one entry per cluster that holds a video keyframe) and a
//! SeekHead that points to Info, Tracks and Cues, keeping every frame as it is.
//!
//! EBML in short: an element is an ID (1–4 bytes, length marker kept), a size (a variable
//! length integer of 1–8 bytes, all value bits set = unknown) and its payload.

use thiserror::Error;

use super::ebml::*;

/// Elements that may follow a Cluster inside a Segment: where an unknown-size Cluster ends.
/// (Void may also sit inside a Cluster, so it does not end one.)
const SEGMENT_CHILDREN: [u32; 8] = [
    SEEK_HEAD,
    INFO,
    TRACKS,
    CLUSTER,
    CUES,
    0x1941_A469, // Attachments
    0x1043_A770, // Chapters
    0x1254_C367, // Tags
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebmError {
    #[error("not a WebM file (no EBML header)")]
    NotWebm,
    #[error("no Segment after the EBML header")]
    NoSegment,
    #[error("malformed EBML at byte {0}")]
    Malformed(usize),
    #[error("no Tracks element")]
    NoTracks,
    #[error("no frames")]
    NoFrames,
}

/// The rewritten file and its duration in milliseconds.
pub struct Seekable {
    pub bytes: Vec<u8>,
    pub duration_ms: u64,
}

/// Rewrites `input` seekable. A truncated last element (a recording cut short) is dropped;
/// everything before it is kept.
pub fn make_seekable(input: &[u8]) -> Result<Seekable, WebmError> {
    let mut r = Reader { buf: input, pos: 0 };
    let header = r.element().ok_or(WebmError::NotWebm)?;
    if header.id != EBML || header.size.is_none() {
        return Err(WebmError::NotWebm);
    }
    r.pos = header.end(input.len());
    let segment = r.element().ok_or(WebmError::NoSegment)?;
    if segment.id != SEGMENT {
        return Err(WebmError::NoSegment);
    }
    let ebml_header = &input[header.start..header.end(input.len())];
    let segment_end = segment.end(input.len());

    let mut info: Option<Vec<u8>> = None;
    let mut scale_ns: u64 = 1_000_000;
    let mut tracks: Option<&[u8]> = None;
    let mut video_track: Option<u64> = None;
    let mut first_track: Option<u64> = None;
    let mut others: Vec<&[u8]> = Vec::new();
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut last = LastBlocks::new();

    r.pos = segment.data;
    while r.pos < segment_end {
        let Some(el) = r.element() else { break };
        let known_end = el.size.map(|s| el.data + s as usize);
        if known_end.is_some_and(|end| end > segment_end) {
            break; // cut short: keep what came before
        }
        match el.id {
            INFO => {
                let end = known_end.ok_or(WebmError::Malformed(el.start))?;
                let mut kept = Vec::new();
                for child in children(input, el.data, end)? {
                    if child.id == TIMECODE_SCALE {
                        scale_ns = read_uint(child.payload(input)).max(1);
                    }
                    if child.id != DURATION {
                        kept.extend_from_slice(child.whole(input));
                    }
                }
                info = Some(kept);
                r.pos = end;
            }
            TRACKS => {
                let end = known_end.ok_or(WebmError::Malformed(el.start))?;
                for entry in children(input, el.data, end)? {
                    if entry.id != TRACK_ENTRY {
                        continue;
                    }
                    let (mut number, mut kind) = (None, None);
                    for field in children(input, entry.data, entry.data + entry.len())? {
                        let value = field.payload(input);
                        match field.id {
                            TRACK_NUMBER => number = Some(read_uint(value)),
                            TRACK_TYPE => kind = Some(read_uint(value)),
                            _ => {}
                        }
                    }
                    first_track = first_track.or(number);
                    if kind == Some(1) {
                        video_track = video_track.or(number);
                    }
                }
                tracks = Some(&input[el.start..end]);
                r.pos = end;
            }
            CLUSTER => {
                let end = match known_end {
                    Some(end) => end,
                    None => unknown_size_end(input, el.data, segment_end),
                };
                let cluster = read_cluster(input, el.data, end, video_track, &mut last)?;
                clusters.push(cluster);
                r.pos = end;
            }
            SEEK_HEAD | CUES | VOID => {
                r.pos = known_end.ok_or(WebmError::Malformed(el.start))?;
            }
            _ => {
                let end = known_end.ok_or(WebmError::Malformed(el.start))?;
                others.push(&input[el.start..end]);
                r.pos = end;
            }
        }
    }
    let tracks = tracks.ok_or(WebmError::NoTracks)?;
    let cue_track = video_track.or(first_track).ok_or(WebmError::NoTracks)?;
    // Each track's last frame lasts about as long as the gap before it (at most a second).
    let second = 1_000_000_000 / scale_ns;
    let duration_ticks = last
        .values()
        .map(|&(time, gap)| time.saturating_add(gap.min(second)))
        .max()
        .ok_or(WebmError::NoFrames)?;
    let duration_ms = u64::try_from(u128::from(duration_ticks) * u128::from(scale_ns) / 1_000_000)
        .unwrap_or(u64::MAX);

    // Layout inside the Segment: SeekHead, Info, Tracks, other top elements, Cues, Clusters.
    // Every position and size written below has a fixed width, so offsets are known before
    // anything is written.
    let mut info_el = Vec::new();
    let mut info_body = info.unwrap_or_default();
    put_element(
        &mut info_body,
        DURATION,
        &(duration_ticks as f64).to_be_bytes(),
    );
    put_element(&mut info_el, INFO, &info_body);

    let seek_head_len = seek_head(&[(INFO, 0), (TRACKS, 0), (CUES, 0)]).len();
    let info_pos = seek_head_len as u64;
    let tracks_pos = info_pos + info_el.len() as u64;
    let others_len: usize = others.iter().map(|o| o.len()).sum();
    let cues_pos = tracks_pos + tracks.len() as u64 + others_len as u64;
    let keyframed: Vec<(usize, u64)> = clusters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.cue_time.map(|t| (i, t)))
        .collect();
    let cues_len = cues(&vec![(0u64, 0u64, 0u64); keyframed.len()]).len();
    let mut cluster_pos = Vec::with_capacity(clusters.len());
    let mut pos = cues_pos + cues_len as u64;
    for cluster in &clusters {
        cluster_pos.push(pos);
        pos += cluster.encoded_len() as u64;
    }
    let segment_len = pos;
    let points: Vec<(u64, u64, u64)> = keyframed
        .iter()
        .map(|&(i, time)| (time, cue_track, cluster_pos[i]))
        .collect();

    let mut out = Vec::with_capacity(input.len() + 1024);
    out.extend_from_slice(ebml_header);
    put_id(&mut out, SEGMENT);
    put_size8(&mut out, segment_len);
    out.extend_from_slice(&seek_head(&[
        (INFO, info_pos),
        (TRACKS, tracks_pos),
        (CUES, cues_pos),
    ]));
    out.extend_from_slice(&info_el);
    out.extend_from_slice(tracks);
    for other in &others {
        out.extend_from_slice(other);
    }
    out.extend_from_slice(&cues(&points));
    for cluster in &clusters {
        put_id(&mut out, CLUSTER);
        put_size8(&mut out, cluster.body.len() as u64);
        out.extend_from_slice(&cluster.body);
    }
    Ok(Seekable {
        bytes: out,
        duration_ms,
    })
}

struct Cluster {
    /// Its children (timecode, blocks) as they were, without a cut-short tail and without
    /// what its move makes wrong (Position, PrevSize, CRC-32, Void).
    body: Vec<u8>,
    /// Absolute time of its first video keyframe (or its first block without video).
    cue_time: Option<u64>,
}

impl Cluster {
    fn encoded_len(&self) -> usize {
        4 + 8 + self.body.len()
    }
}

/// Per track, the time of its latest block and the gap before it.
type LastBlocks = std::collections::HashMap<u64, (u64, u64)>;

fn read_cluster(
    input: &[u8],
    start: usize,
    end: usize,
    video_track: Option<u64>,
    last: &mut LastBlocks,
) -> Result<Cluster, WebmError> {
    let mut timecode: u64 = 0;
    let mut cue_time = None;
    let mut body = Vec::with_capacity(end - start);
    for child in children_lenient(input, start, end) {
        let payload = child.payload(input);
        let block = match child.id {
            CLUSTER_POSITION | PREV_SIZE | CRC32 | VOID => continue,
            TIMECODE => {
                timecode = read_uint(payload);
                None
            }
            SIMPLE_BLOCK => Some((payload, true)),
            BLOCK_GROUP => children(input, child.data, child.data + child.len())?
                .into_iter()
                .find(|c| c.id == BLOCK)
                .map(|b| (b.payload(input), false)),
            _ => None,
        };
        body.extend_from_slice(child.whole(input));
        let Some((block, simple)) = block else {
            continue;
        };
        let mut br = Reader { buf: block, pos: 0 };
        let track = br.vint().ok_or(WebmError::Malformed(child.data))?.0;
        let rel = block
            .get(br.pos..br.pos + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or(WebmError::Malformed(child.data))?;
        let flags = block.get(br.pos + 2).copied().unwrap_or(0);
        let time = timecode.saturating_add_signed(i64::from(rel));
        let keyframe = simple && flags & 0x80 != 0;
        let cue_here = match video_track {
            Some(video) => keyframe && track == video,
            None => true,
        };
        if cue_time.is_none() && cue_here {
            cue_time = Some(time);
        }
        let entry = last.entry(track).or_insert((time, 0));
        if time > entry.0 {
            *entry = (time, time - entry.0);
        }
    }
    Ok(Cluster { body, cue_time })
}

fn seek_head(entries: &[(u32, u64)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(id, pos) in entries {
        let mut seek = Vec::new();
        let mut id_bytes = Vec::new();
        put_id(&mut id_bytes, id);
        put_element(&mut seek, SEEK_ID, &id_bytes);
        put_element(&mut seek, SEEK_POSITION, &pos.to_be_bytes());
        put_element(&mut body, SEEK, &seek);
    }
    let mut out = Vec::new();
    put_element(&mut out, SEEK_HEAD, &body);
    out
}

fn cues(points: &[(u64, u64, u64)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(time, track, pos) in points {
        let mut positions = Vec::new();
        put_element(&mut positions, CUE_TRACK, &track.to_be_bytes());
        put_element(&mut positions, CUE_CLUSTER_POSITION, &pos.to_be_bytes());
        let mut point = Vec::new();
        put_element(&mut point, CUE_TIME, &time.to_be_bytes());
        put_element(&mut point, CUE_TRACK_POSITIONS, &positions);
        put_element(&mut body, CUE_POINT, &point);
    }
    let mut out = Vec::new();
    put_element(&mut out, CUES, &body);
    out
}

fn read_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .fold(0, |v, &b| (v << 8) | u64::from(b))
}

/// Where an unknown-size Cluster that starts its children at `start` ends: at the next
/// element that belongs to the Segment, or at the end.
fn unknown_size_end(input: &[u8], start: usize, limit: usize) -> usize {
    let mut r = Reader {
        buf: &input[..limit],
        pos: start,
    };
    loop {
        let at = r.pos;
        match r.element() {
            Some(el) if SEGMENT_CHILDREN.contains(&el.id) => return at,
            Some(el) => match el.size {
                Some(size) if el.data + size as usize <= limit => r.pos = el.data + size as usize,
                _ => return limit,
            },
            None => return limit,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Element {
    id: u32,
    start: usize,
    data: usize,
    size: Option<u64>,
}

impl Element {
    fn len(&self) -> usize {
        self.size.unwrap_or(0) as usize
    }

    /// Its payload (a known-size element that was checked to fit).
    fn payload<'a>(&self, input: &'a [u8]) -> &'a [u8] {
        &input[self.data..self.data + self.len()]
    }

    /// Header and payload.
    fn whole<'a>(&self, input: &'a [u8]) -> &'a [u8] {
        &input[self.start..self.data + self.len()]
    }

    /// The end of its payload; an unknown size runs to `limit`.
    fn end(&self, limit: usize) -> usize {
        self.size
            .map_or(limit, |s| (self.data + s as usize).min(limit))
    }
}

/// The known-size children of `[start, end)`; an element that runs past `end` is an error.
fn children(input: &[u8], start: usize, end: usize) -> Result<Vec<Element>, WebmError> {
    let mut r = Reader {
        buf: &input[..end],
        pos: start,
    };
    let mut out = Vec::new();
    while r.pos < end {
        let el = r.element().ok_or(WebmError::Malformed(r.pos))?;
        let size = el.size.ok_or(WebmError::Malformed(el.start))? as usize;
        if el.data + size > end {
            return Err(WebmError::Malformed(el.start));
        }
        r.pos = el.data + size;
        out.push(el);
    }
    Ok(out)
}

/// Like [`children`], but stops quietly at the first element that is cut short.
fn children_lenient(input: &[u8], start: usize, end: usize) -> Vec<Element> {
    let mut r = Reader {
        buf: &input[..end],
        pos: start,
    };
    let mut out = Vec::new();
    while r.pos < end {
        let Some(el) = r.element() else { break };
        match el.size {
            Some(size) if el.data + size as usize <= end => {
                r.pos = el.data + size as usize;
                out.push(el);
            }
            _ => break,
        }
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    /// An element header at the current position; the position moves to its payload.
    fn element(&mut self) -> Option<Element> {
        let start = self.pos;
        let first = *self.buf.get(self.pos)?;
        let width = first.leading_zeros() as usize + 1;
        if width > 4 {
            return None;
        }
        let id_bytes = self.buf.get(self.pos..self.pos + width)?;
        let id = read_uint(id_bytes) as u32;
        self.pos += width;
        let (value, unknown) = self.vint()?;
        Some(Element {
            id,
            start,
            data: self.pos,
            size: (!unknown).then_some(value),
        })
    }

    /// A variable length integer: its value, and whether all its value bits are set
    /// (an unknown size).
    fn vint(&mut self) -> Option<(u64, bool)> {
        let first = *self.buf.get(self.pos)?;
        let width = first.leading_zeros() as usize + 1;
        if width > 8 {
            return None;
        }
        let bytes = self.buf.get(self.pos..self.pos + width)?;
        self.pos += width;
        let mask = if width == 8 { 0 } else { 0xFFu8 >> width };
        let mut value = u64::from(bytes[0] & mask);
        for &b in &bytes[1..] {
            value = (value << 8) | u64::from(b);
        }
        let all_ones = value == (1u64 << (7 * width)) - 1;
        Some((value, all_ones))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An element with a minimal-width size, as libwebm writes them.
    fn el(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_id(&mut out, id);
        let n = payload.len() as u64;
        if n < 0x7F {
            out.push(0x80 | n as u8);
        } else {
            out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
        }
        out.extend_from_slice(payload);
        out
    }

    /// An element of unknown size (its size byte all ones: 0x01FFFFFFFFFFFFFF).
    fn unknown(id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put_id(&mut out, id);
        out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        out
    }

    fn block(track: u8, rel: i16, key: bool) -> Vec<u8> {
        let mut b = vec![0x80 | track];
        b.extend_from_slice(&rel.to_be_bytes());
        b.push(if key { 0x80 } else { 0 });
        b.extend_from_slice(&[0xAB; 20]);
        el(SIMPLE_BLOCK, &b)
    }

    /// A live WebM like Chromium's: unknown-size Segment and Clusters, video track 1 and
    /// audio track 2, a cluster per second starting with a keyframe, 30 fps video and 20 ms
    /// audio, no Duration, no Cues.
    fn live_webm(seconds: u16) -> Vec<u8> {
        let mut f = el(EBML, &el(0x4282, b"webm"));
        f.extend(unknown(SEGMENT));
        f.extend(el(
            INFO,
            &[
                el(TIMECODE_SCALE, &[0x0F, 0x42, 0x40]),
                el(0x4D80, b"Chrome"),
            ]
            .concat(),
        ));
        let video = [
            el(TRACK_NUMBER, &[1]),
            el(TRACK_TYPE, &[1]),
            el(0x86, b"V_VP9"),
        ]
        .concat();
        let audio = [
            el(TRACK_NUMBER, &[2]),
            el(TRACK_TYPE, &[2]),
            el(0x86, b"A_OPUS"),
        ]
        .concat();
        f.extend(el(
            TRACKS,
            &[el(TRACK_ENTRY, &video), el(TRACK_ENTRY, &audio)].concat(),
        ));
        for s in 0..seconds {
            f.extend(unknown(CLUSTER));
            f.extend(el(TIMECODE, &(u32::from(s) * 1000).to_be_bytes()));
            for i in 0..50i16 {
                if i % 3 == 0 && i / 3 < 30 {
                    f.extend(block(1, i * 20, i == 0));
                }
                f.extend(block(2, i * 20, true));
            }
        }
        f
    }

    /// Walks the output as a player would: known sizes everywhere, SeekHead → Info, Tracks
    /// and Cues, each cue → a Cluster.
    pub(crate) fn check(out: &[u8]) -> (f64, Vec<(u64, u64)>) {
        let mut r = Reader { buf: out, pos: 0 };
        let header = r.element().unwrap();
        r.pos = header.end(out.len());
        let segment = r.element().unwrap();
        assert_eq!(segment.id, SEGMENT);
        assert_eq!(
            segment.end(usize::MAX),
            out.len(),
            "segment size is the rest of the file"
        );
        let top = children(out, segment.data, out.len()).unwrap();
        let ids: Vec<u32> = top.iter().map(|e| e.id).collect();
        assert_eq!(&ids[..4], &[SEEK_HEAD, INFO, TRACKS, CUES]);
        assert!(ids[4..].iter().all(|&id| id == CLUSTER));
        let at = |pos: u64| {
            let mut r = Reader {
                buf: out,
                pos: segment.data + pos as usize,
            };
            r.element().unwrap().id
        };
        for seek in children(out, top[0].data, top[0].data + top[0].len()).unwrap() {
            let fields = children(out, seek.data, seek.data + seek.len()).unwrap();
            let id = read_uint(&out[fields[0].data..fields[0].data + fields[0].len()]) as u32;
            let pos = read_uint(&out[fields[1].data..fields[1].data + fields[1].len()]);
            assert_eq!(at(pos), id, "the SeekHead points at {id:x}");
        }
        let duration = children(out, top[1].data, top[1].data + top[1].len())
            .unwrap()
            .into_iter()
            .find(|c| c.id == DURATION)
            .map(|c| f64::from_be_bytes(out[c.data..c.data + 8].try_into().unwrap()))
            .unwrap();
        let mut points = Vec::new();
        for point in children(out, top[3].data, top[3].data + top[3].len()).unwrap() {
            let fields = children(out, point.data, point.data + point.len()).unwrap();
            let time = read_uint(&out[fields[0].data..fields[0].data + fields[0].len()]);
            let positions =
                children(out, fields[1].data, fields[1].data + fields[1].len()).unwrap();
            let pos = read_uint(&out[positions[1].data..positions[1].data + positions[1].len()]);
            assert_eq!(at(pos), CLUSTER, "cue at {time} ms points at a cluster");
            points.push((time, pos));
        }
        (duration, points)
    }

    #[test]
    fn a_live_webm_gets_sizes_duration_and_cues() {
        let input = live_webm(5);
        let out = make_seekable(&input).unwrap();
        let (duration, points) = check(&out.bytes);
        // The last video frame at 4 s + 960 ms lasts 60 ms like those before it (the last
        // audio block, at 4 s + 980 ms, ends at 5000).
        assert_eq!(duration, 5020.0);
        assert_eq!(out.duration_ms, 5020);
        let times: Vec<u64> = points.iter().map(|p| p.0).collect();
        assert_eq!(times, [0, 1000, 2000, 3000, 4000]);
        // Frames are kept byte for byte: the output holds every block of the input.
        let blocks = |f: &[u8]| f.windows(4).filter(|w| w == &[0xAB; 4]).count();
        assert_eq!(blocks(&out.bytes), blocks(&input));
    }

    #[test]
    fn idempotent_and_cut_short_files() {
        let once = make_seekable(&live_webm(3)).unwrap();
        let twice = make_seekable(&once.bytes).unwrap();
        assert_eq!(twice.bytes, once.bytes, "a seekable file stays as it is");
        // A recording cut mid-block (a crash, a lost last chunk) keeps what came before.
        let full = live_webm(3);
        let cut = &full[..full.len() - 7];
        let out = make_seekable(cut).unwrap();
        let (duration, points) = check(&out.bytes);
        assert_eq!(points.len(), 3);
        assert!((2950.0..=3020.0).contains(&duration), "{duration}");
    }

    #[test]
    fn void_and_position_elements_inside_clusters() {
        // Void, CRC-32, Position and PrevSize after each cluster's timecode: a Void does not
        // end an unknown-size cluster, and what would be wrong after the move is dropped.
        let plain = live_webm(3);
        let extras = [
            el(VOID, &[0; 6]),
            el(CRC32, &[1, 2, 3, 4]),
            el(CLUSTER_POSITION, &[0x12]),
            el(PREV_SIZE, &[0x34]),
        ]
        .concat();
        let mut input = Vec::new();
        let mut rest = &plain[..];
        let timecode = |s: u32| el(TIMECODE, &(s * 1000).to_be_bytes());
        for s in 0..3u32 {
            let tc = timecode(s);
            let at = rest.windows(tc.len()).position(|w| w == tc).unwrap() + tc.len();
            input.extend_from_slice(&rest[..at]);
            input.extend_from_slice(&extras);
            rest = &rest[at..];
        }
        input.extend_from_slice(rest);
        let out = make_seekable(&input).unwrap();
        let (_, points) = check(&out.bytes);
        assert_eq!(points.len(), 3, "three clusters, not more");
        assert_eq!(out.bytes, make_seekable(&plain).unwrap().bytes);
    }

    #[test]
    fn refuses_what_is_not_webm() {
        assert_eq!(make_seekable(b"").err(), Some(WebmError::NotWebm));
        assert_eq!(
            make_seekable(b"\x00\x00\x00\x18ftypmp42").err(),
            Some(WebmError::NotWebm)
        );
        let mut no_segment = el(EBML, &[]);
        no_segment.extend(el(INFO, &[]));
        assert_eq!(make_seekable(&no_segment).err(), Some(WebmError::NoSegment));
        let mut no_frames = el(EBML, &[]);
        no_frames.extend(unknown(SEGMENT));
        no_frames.extend(el(TRACKS, &el(TRACK_ENTRY, &el(TRACK_NUMBER, &[1]))));
        assert_eq!(make_seekable(&no_frames).err(), Some(WebmError::NoFrames));
        // Garbage after a valid start never panics.
        let mut junk = live_webm(1);
        junk.extend_from_slice(&[0xFF; 64]);
        let _ = make_seekable(&junk);
        for n in 0..200 {
            let _ = make_seekable(&live_webm(1)[..n]);
        }
    }
}
