//! The LL-HLS packager's CMAF boxes decoded back by an independent decoder (`mp4-atom`): the
//! init segment describes an H.264 and an Opus track; every part is one `moof` + `mdat`
//! whose sequence numbers follow each other, whose decode times continue exactly where the
//! part before ended, whose sample sizes fill its `mdat`, and whose first video sample is a
//! sync sample exactly when the playlist calls the part independent.

use std::{io::Cursor, time::UNIX_EPOCH};

use media_out::{
    hls::packager::{LivePackager, NewPart, PackagerConfig},
    mp4::H264Track,
};
use mp4_atom::{Any, Codec, Decode, Mdat, Moof, Moov};

/// A 320×240 baseline SPS and its PPS (Chromium's OpenH264 sends such).
const SPS: [u8; 24] = [
    0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
    0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
];
const PPS: [u8; 5] = [0x68, 0xcb, 0x83, 0xcb, 0x20];
/// ISO/IEC 14496-12 sample flags: `sample_is_non_sync_sample`.
const NON_SYNC: u32 = 0x0001_0000;

fn atoms(bytes: &[u8]) -> Vec<Any> {
    let mut cursor = Cursor::new(bytes);
    let mut out = Vec::new();
    while (cursor.position() as usize) < bytes.len() {
        out.push(Any::decode(&mut cursor).expect("a box mp4-atom can decode"));
    }
    out
}

/// 6 s at 15 fps and Opus every 20 ms; a keyframe whenever the packager asks for one.
fn package() -> (Vec<u8>, Vec<NewPart>) {
    let track = H264Track {
        sps: SPS.to_vec(),
        pps: PPS.to_vec(),
        width: 320,
        height: 240,
    };
    let (mut packager, init) =
        LivePackager::new(PackagerConfig::default(), Some(track), true, UNIX_EPOCH);
    let mut parts = Vec::new();
    let mut keyframe = true;
    let mut audio_ms = 0;
    for frame in 0..90u64 {
        let ms = frame * 1000 / 15;
        while audio_ms <= ms {
            parts.extend(packager.audio(audio_ms, &[0xfc, 0xff, 0xfe]));
            audio_ms += 20;
        }
        let mut annex_b = Vec::new();
        if keyframe {
            for nal in [&SPS[..], &PPS[..], &[0x65, 0x88, 0x80, 0x40][..]] {
                annex_b.extend([0, 0, 0, 1]);
                annex_b.extend(nal);
            }
        } else {
            annex_b.extend([0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x10]);
        }
        parts.extend(packager.video(ms, keyframe, &annex_b));
        keyframe = packager.keyframe_wanted(ms);
    }
    parts.extend(packager.finish());
    (init, parts)
}

#[test]
fn the_init_segment_describes_h264_and_opus() {
    let (init, _) = package();
    let boxes = atoms(&init);
    assert!(matches!(boxes[0], Any::Ftyp(_)), "{:?}", boxes[0]);
    let Any::Moov(Moov { trak, mvex, .. }) = &boxes[1] else {
        panic!("no moov: {:?}", boxes[1])
    };
    assert!(mvex.is_some(), "a fragmented file says so (mvex)");
    let codecs: Vec<&Codec> = trak
        .iter()
        .flat_map(|t| &t.mdia.minf.stbl.stsd.codecs)
        .collect();
    assert_eq!(codecs.len(), 2, "{codecs:?}");
    let Codec::Avc1(avc1) = codecs[0] else {
        panic!("video is not avc1: {:?}", codecs[0])
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
    assert_eq!(avc1.avcc.sequence_parameter_sets, [SPS.to_vec()]);
    assert_eq!(avc1.avcc.picture_parameter_sets, [PPS.to_vec()]);
    let Codec::Opus(opus) = codecs[1] else {
        panic!("audio is not Opus: {:?}", codecs[1])
    };
    assert_eq!(opus.dops.output_channel_count, 2);
}

#[test]
fn parts_are_moof_and_mdat_that_continue_each_other() {
    let (_, parts) = package();
    assert!(parts.len() >= 25, "{} parts in 6 s", parts.len());
    let mut sequence = None;
    // Per track: where its next part must start (decode time), and its timescale's share.
    let mut next_decode: [Option<u64>; 2] = [None, None];
    for part in &parts {
        let boxes = atoms(&part.bytes);
        let [Any::Moof(moof), Any::Mdat(Mdat { data })] = &boxes[..] else {
            panic!("part {:?} is not moof + mdat: {boxes:?}", part.position)
        };
        let Moof { mfhd, traf } = moof;
        if let Some(previous) = sequence {
            assert_eq!(mfhd.sequence_number, previous + 1, "{:?}", part.position);
        }
        sequence = Some(mfhd.sequence_number);
        let mut sizes = 0u64;
        let mut first_video_sync = None;
        for traf in traf {
            let track = traf.tfhd.track_id as usize - 1;
            let start = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
            if let Some(expected) = next_decode[track] {
                assert_eq!(
                    start,
                    expected,
                    "track {} at {:?}",
                    track + 1,
                    part.position
                );
            }
            let mut duration = 0u64;
            // Track 1 is the video (the init segment's first trak, checked above).
            for (run, trun) in traf.trun.iter().enumerate() {
                for (i, sample) in trun.samples.iter().enumerate() {
                    duration += u64::from(sample.duration.expect("sample duration"));
                    sizes += u64::from(sample.size.expect("sample size"));
                    if track == 0 && run == 0 && i == 0 {
                        let flags = sample.flags.expect("first sample flags");
                        first_video_sync = Some(flags & NON_SYNC == 0);
                    }
                }
            }
            next_decode[track] = Some(start + duration);
        }
        assert_eq!(
            sizes,
            data.len() as u64,
            "samples fill the mdat at {:?}",
            part.position
        );
        // The playlist's INDEPENDENT=YES, and the packager's: a part opening a segment.
        let opens_segment = part.position.1 == 0;
        assert_eq!(
            first_video_sync,
            Some(opens_segment),
            "part {:?}: its first video sample is a sync sample iff it opens a segment",
            part.position
        );
    }
    let segments = parts.last().unwrap().position.0 + 1;
    assert!(
        (3..=4).contains(&segments),
        "{segments} segments of ~2 s in 6 s"
    );
}
