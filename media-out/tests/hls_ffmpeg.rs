//! The LL-HLS packager's output read by Debian's ffmpeg: real H.264 (libx264) and Opus
//! (libopus) from ffmpeg's test sources, packaged into an init segment, parts, segments and
//! a playlist, which `ffprobe` and `ffmpeg -v error` must take without a word.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::UNIX_EPOCH,
};

use media_out::{
    codec::{h264_parameter_sets, nal_units},
    hls::{
        packager::{LivePackager, PackagerConfig},
        playlist::{part_uri, segment_uri},
    },
    mp4::H264Track,
};

const SECONDS: u32 = 7;
const FPS: u64 = 15;

/// Runs Debian's ffmpeg with `args` (split at blanks), writing `output`.
fn ffmpeg(args: &str, output: &Path) {
    let result = Command::new("ffmpeg")
        .args(args.split_whitespace())
        .arg(output)
        .output()
        .expect("Debian's ffmpeg is installed (apt-get install ffmpeg)");
    assert!(
        result.status.success(),
        "ffmpeg {args}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hls-ffmpeg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `SECONDS` of 320×240 H.264 at 15 fps (a keyframe every 2 s, an access unit delimiter
/// before each frame) as Annex B access units.
fn h264_access_units(dir: &Path) -> Vec<Vec<u8>> {
    let file = dir.join("video.h264");
    ffmpeg(
        &format!(
            "-v error -y -f lavfi -i testsrc=size=320x240:rate={FPS} -t {SECONDS} -pix_fmt yuv420p \
             -c:v libx264 -profile:v baseline -g 30 -bsf:v h264_metadata=aud=insert -f h264"
        ),
        &file,
    );
    let stream = std::fs::read(file).unwrap();
    let mut units: Vec<Vec<u8>> = Vec::new();
    for nal in nal_units(&stream) {
        if nal.first().is_some_and(|h| h & 0x1f == 9) {
            units.push(Vec::new()); // an access unit delimiter opens each frame
        }
        if let Some(unit) = units.last_mut() {
            unit.extend_from_slice(&[0, 0, 0, 1]);
            unit.extend_from_slice(nal);
        }
    }
    units
}

/// `SECONDS` of Opus at 20 ms (libopus in Ogg), its packets.
fn opus_packets(dir: &Path) -> Vec<Vec<u8>> {
    let file = dir.join("audio.ogg");
    ffmpeg(
        &format!(
            "-v error -y -f lavfi -i sine=frequency=440:sample_rate=48000 -t {SECONDS} \
             -c:a libopus -frame_duration 20 -f ogg"
        ),
        &file,
    );
    let ogg = std::fs::read(file).unwrap();
    // Ogg pages: a 27-byte header, the segment table, then the segments; a packet ends at a
    // segment shorter than 255.
    let (mut at, mut packets, mut packet) = (0, Vec::new(), Vec::new());
    while at + 27 <= ogg.len() {
        assert_eq!(&ogg[at..at + 4], b"OggS");
        let count = ogg[at + 26] as usize;
        let table = &ogg[at + 27..at + 27 + count];
        let mut body = at + 27 + count;
        for &len in table {
            packet.extend_from_slice(&ogg[body..body + len as usize]);
            body += len as usize;
            if len < 255 {
                packets.push(std::mem::take(&mut packet));
            }
        }
        at = body;
    }
    // OpusHead and OpusTags first.
    packets.drain(..2);
    packets
}

#[test]
fn ffmpeg_reads_the_parts_segments_and_playlist() {
    let dir = scratch();
    let video = h264_access_units(&dir);
    let audio = opus_packets(&dir);
    assert!(
        video.len() as u64 >= FPS * u64::from(SECONDS) - 1,
        "{} frames",
        video.len()
    );
    let (sps, pps) = h264_parameter_sets(&video[0]).expect("the first frame carries SPS and PPS");
    let track = H264Track {
        sps: sps.to_vec(),
        pps: pps.to_vec(),
        width: 320,
        height: 240,
    };
    let (mut packager, init) =
        LivePackager::new(PackagerConfig::default(), Some(track), true, UNIX_EPOCH);
    std::fs::write(dir.join("init.mp4"), &init).unwrap();
    let mut parts = Vec::new();
    let mut audio = audio.iter().enumerate().peekable();
    for (i, unit) in video.iter().enumerate() {
        let ms = i as u64 * 1000 / FPS;
        while let Some((n, packet)) = audio.next_if(|(n, _)| *n as u64 * 20 <= ms) {
            parts.extend(packager.audio(n as u64 * 20, packet));
        }
        let keyframe = nal_units(unit).any(|nal| nal.first().is_some_and(|h| h & 0x1f == 5));
        parts.extend(packager.video(ms, keyframe, unit));
    }
    parts.extend(packager.finish());
    let playlist = packager.playlist();
    // Every part on its own, every segment as its parts one after another, the playlist.
    let mut whole = init.clone();
    for part in &parts {
        let (msn, index) = part.position;
        std::fs::write(dir.join(part_uri(msn, index)), &part.bytes).unwrap();
        let segment = dir.join(segment_uri(msn));
        let mut bytes = std::fs::read(&segment).unwrap_or_default();
        bytes.extend_from_slice(&part.bytes);
        std::fs::write(segment, bytes).unwrap();
        whole.extend_from_slice(&part.bytes);
    }
    std::fs::write(dir.join("whole.mp4"), &whole).unwrap();
    std::fs::write(dir.join("index.m3u8"), playlist.render("init.mp4", false)).unwrap();
    assert_eq!(
        playlist.segments().count(),
        4,
        "segments at the keyframes, every 2 s"
    );
    assert_eq!(
        packager.codecs(),
        format!("avc1.{:02x}{:02x}{:02x},opus", sps[1], sps[2], sps[3])
    );

    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height:format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(dir.join("whole.mp4"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(
        listed.contains("h264,320,240") && listed.contains("opus"),
        "{listed}"
    );
    for input in ["whole.mp4", "index.m3u8"] {
        let decode = Command::new("ffmpeg")
            .current_dir(&dir)
            .args(["-v", "error", "-i", input, "-f", "null", "-"])
            .output()
            .unwrap();
        let errors = String::from_utf8_lossy(&decode.stderr);
        assert!(
            decode.status.success() && errors.trim().is_empty(),
            "{input}: {errors}"
        );
    }
    // The playlist's length is the stream's.
    let probe = Command::new("ffprobe")
        .current_dir(&dir)
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            "index.m3u8",
        ])
        .output()
        .unwrap();
    let seconds: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    assert!((seconds - f64::from(SECONDS)).abs() < 0.3, "{seconds} s");
    std::fs::remove_dir_all(&dir).unwrap();
}
