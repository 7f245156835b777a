//! RTP payloads back into codec frames: the payload descriptors of VP8 (RFC 7741) and VP9
//! (RFC 9628) stripped, H.264 NAL units out of single, STAP-A and FU-A packets (RFC 6184) as
//! an Annex B byte stream, Opus as it is (RFC 7587: one packet, one frame), and what a
//! keyframe says about the picture's size.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
}

impl Codec {
    pub fn is_video(self) -> bool {
        self != Codec::Opus
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Vp8 | Codec::Vp9 | Codec::H264 => 90_000,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DepacketizeError {
    #[error("empty RTP payload")]
    Empty,
    #[error("the payload descriptor runs past the end of the payload")]
    Truncated,
    #[error("a packetization mode we do not take (H.264 STAP-B, MTAP or FU-B)")]
    Unsupported,
}

/// One RTP payload's share of a frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub data: &'a [u8],
    /// The first packet of a frame.
    pub starts_frame: bool,
    /// VP9 with spatial layers: a layer above the base, left out (see [`depacketize`]).
    pub upper_spatial_layer: bool,
}

/// Strips `payload`'s descriptor. VP9 spatial layers above the base are marked rather than
/// joined: a recording keeps the base layer of an SVC stream (Chromium sends one spatial
/// layer unless told otherwise).
pub fn depacketize(codec: Codec, payload: &[u8]) -> Result<Fragment<'_>, DepacketizeError> {
    if payload.is_empty() {
        return Err(DepacketizeError::Empty);
    }
    match codec {
        Codec::Opus => Ok(Fragment {
            data: payload,
            starts_frame: true,
            upper_spatial_layer: false,
        }),
        Codec::Vp8 => vp8(payload),
        Codec::Vp9 => vp9(payload),
        Codec::H264 => Ok(Fragment {
            data: payload,
            // Single NAL units and STAP-A start NAL units; FU-A only with its S bit.
            starts_frame: match payload[0] & 0x1f {
                1..=24 => true,
                28 => payload.get(1).is_some_and(|h| h & 0x80 != 0),
                _ => false,
            },
            upper_spatial_layer: false,
        }),
    }
}

/// The Annex B start code put before each H.264 NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Appends `payload`'s share of a frame to `frame`: the descriptor stripped, or for H.264 its
/// NAL units (or FU-A fragment) as Annex B. VP9 spatial layers above the base are left out.
pub fn append_frame_data(
    codec: Codec,
    payload: &[u8],
    frame: &mut Vec<u8>,
) -> Result<(), DepacketizeError> {
    let fragment = depacketize(codec, payload)?;
    if codec != Codec::H264 {
        if !fragment.upper_spatial_layer {
            frame.extend_from_slice(fragment.data);
        }
        return Ok(());
    }
    match payload[0] & 0x1f {
        1..=23 => {
            frame.extend_from_slice(&START_CODE);
            frame.extend_from_slice(payload);
        }
        24 => {
            let mut at = 1;
            while at < payload.len() {
                let size = usize::from(u16::from_be_bytes([
                    byte(payload, at)?,
                    byte(payload, at + 1)?,
                ]));
                let nal = payload
                    .get(at + 2..at + 2 + size)
                    .ok_or(DepacketizeError::Truncated)?;
                frame.extend_from_slice(&START_CODE);
                frame.extend_from_slice(nal);
                at += 2 + size;
            }
        }
        28 => {
            let header = byte(payload, 1)?;
            if header & 0x80 != 0 {
                frame.extend_from_slice(&START_CODE);
                frame.push(payload[0] & 0xe0 | header & 0x1f);
            }
            frame.extend_from_slice(&payload[2..]);
        }
        _ => return Err(DepacketizeError::Unsupported),
    }
    Ok(())
}

/// The NAL units of an Annex B stream (start codes of 3 or 4 bytes).
pub fn nal_units(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&next| {
            // The next start code, and the zero before it if it was a 4-byte one.
            let end = next - 3;
            if end > 0 && stream[end - 1] == 0 {
                end - 1
            } else {
                end
            }
        })
        .chain(std::iter::once(stream.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(start, end)| &stream[start..end.max(start)])
}

/// An H.264 access unit's sequence and picture parameter sets, if it carries both.
pub fn h264_parameter_sets(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let sps = nal_units(frame).find(|n| n.first().is_some_and(|h| h & 0x1f == 7))?;
    let pps = nal_units(frame).find(|n| n.first().is_some_and(|h| h & 0x1f == 8))?;
    Some((sps, pps))
}

fn byte(payload: &[u8], at: usize) -> Result<u8, DepacketizeError> {
    payload.get(at).copied().ok_or(DepacketizeError::Truncated)
}

fn vp8(p: &[u8]) -> Result<Fragment<'_>, DepacketizeError> {
    let first = p[0];
    let mut at = 1;
    if first & 0x80 != 0 {
        let x = byte(p, 1)?;
        at = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 bits, or 15 with the M bit.
            at += if byte(p, at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID / Y / KEYIDX
        }
    }
    let data = p.get(at..).ok_or(DepacketizeError::Truncated)?;
    Ok(Fragment {
        data,
        // S bit, partition 0.
        starts_frame: first & 0x10 != 0 && first & 0x07 == 0,
        upper_spatial_layer: false,
    })
}

fn vp9(p: &[u8]) -> Result<Fragment<'_>, DepacketizeError> {
    let first = p[0];
    let (picture_id, layers, flexible) = (first & 0x80 != 0, first & 0x20 != 0, first & 0x10 != 0);
    let (predicted, begins, scalability) =
        (first & 0x40 != 0, first & 0x08 != 0, first & 0x02 != 0);
    let mut at = 1;
    if picture_id {
        at += if byte(p, at)? & 0x80 != 0 { 2 } else { 1 };
    }
    let mut spatial_id = 0;
    if layers {
        spatial_id = (byte(p, at)? >> 1) & 0x07;
        at += if flexible { 1 } else { 2 }; // TID|U|SID|D, and TL0PICIDX unless flexible
    }
    if flexible && predicted {
        // Up to three reference indices, each with an N bit saying another follows.
        for _ in 0..3 {
            let more = byte(p, at)? & 0x01 != 0;
            at += 1;
            if !more {
                break;
            }
        }
    }
    if scalability {
        let ss = byte(p, at)?;
        at += 1;
        let spatial_layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            at += 4 * spatial_layers; // WIDTH and HEIGHT of each
        }
        if ss & 0x08 != 0 {
            let pictures = byte(p, at)?;
            at += 1;
            for _ in 0..pictures {
                let references = usize::from((byte(p, at)? >> 2) & 0x03);
                at += 1 + references;
            }
        }
    }
    let data = p.get(at..).ok_or(DepacketizeError::Truncated)?;
    Ok(Fragment {
        data,
        starts_frame: begins,
        upper_spatial_layer: spatial_id > 0,
    })
}

/// A keyframe's picture size, `None` for an inter frame (or what is not a frame of `codec`).
pub fn keyframe_size(codec: Codec, frame: &[u8]) -> Option<(u16, u16)> {
    match codec {
        Codec::Opus => None,
        Codec::Vp8 => vp8_keyframe_size(frame),
        Codec::Vp9 => vp9_keyframe_size(frame),
        Codec::H264 => {
            // An IDR picture, with the sequence parameter set that says its size.
            nal_units(frame).find(|n| n.first().is_some_and(|h| h & 0x1f == 5))?;
            let sps = nal_units(frame).find(|n| n.first().is_some_and(|h| h & 0x1f == 7))?;
            h264_sps_size(sps)
        }
    }
}

/// The picture size in an H.264 sequence parameter set (ITU-T H.264 7.3.2.1.1), cropping
/// applied.
fn h264_sps_size(nal: &[u8]) -> Option<(u16, u16)> {
    // Emulation prevention bytes (00 00 03) out first.
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut bits = Bits { data: &rbsp, at: 0 };
    let profile = bits.read(8)?;
    bits.read(16)?; // constraint flags, level
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = bits.ue()?;
        if chroma_format == 3 {
            bits.read(1)?; // separate_colour_plane_flag
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.read(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.read(1)? == 1 {
            // Scaling lists: skipped, their deltas read.
            for i in 0..if chroma_format == 3 { 12 } else { 8 } {
                if bits.read(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + bits.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.read(1)?;
            bits.se()?;
            bits.se()?;
            for _ in 0..bits.ue()? {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.read(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = bits.ue()? + 1;
    let height_units = bits.ue()? + 1;
    let frame_mbs_only = bits.read(1)?;
    if frame_mbs_only == 0 {
        bits.read(1)?; // mb_adaptive_frame_field_flag
    }
    bits.read(1)?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0, 0);
    if bits.read(1)? == 1 {
        let (left, right, top, bottom) = (bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?);
        let (unit_x, unit_y) = match chroma_format {
            0 | 3 => (1, 2 - frame_mbs_only),
            2 => (2, 2 - frame_mbs_only),
            _ => (2, 2 * (2 - frame_mbs_only)),
        };
        crop_x = (left + right) * unit_x;
        crop_y = (top + bottom) * unit_y;
    }
    let width = (width_mbs * 16).checked_sub(crop_x)?;
    let height = (height_units * 16 * (2 - frame_mbs_only)).checked_sub(crop_y)?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// RFC 6386 9.1: the frame tag's P bit is 0 on a keyframe, then the start code and the
/// 14-bit width and height (little-endian, two scaling bits above them).
fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// VP9's uncompressed header (VP9 bitstream specification 6.2) up to the frame size.
fn vp9_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    let mut bits = Bits { data: frame, at: 0 };
    if bits.read(2)? != 2 {
        return None; // frame_marker
    }
    let profile = bits.read(1)? | bits.read(1)? << 1;
    if profile == 3 {
        bits.read(1)?;
    }
    if bits.read(1)? == 1 {
        return None; // show_existing_frame
    }
    if bits.read(1)? != 0 {
        return None; // frame_type: not a keyframe
    }
    bits.read(2)?; // show_frame, error_resilient_mode
    if bits.read(24)? != 0x49_8342 {
        return None; // sync code
    }
    if profile >= 2 {
        bits.read(1)?; // ten_or_twelve_bit
    }
    let rgb = bits.read(3)? == 7;
    if !rgb {
        bits.read(1)?; // color_range
        if profile == 1 || profile == 3 {
            bits.read(3)?; // subsampling_x, subsampling_y, reserved
        }
    } else if profile == 1 || profile == 3 {
        bits.read(1)?;
    }
    let width = bits.read(16)? + 1;
    let height = bits.read(16)? + 1;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    /// An unsigned Exp-Golomb code.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.read(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.read(zeros)?)
    }

    /// A signed Exp-Golomb code.
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    fn read(&mut self, n: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.at / 8)?;
            value = value << 1 | u32::from(byte >> (7 - self.at % 8) & 1);
            self.at += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A VP8 keyframe's first bytes: frame tag (P = 0), start code, 640×480.
    pub(crate) const VP8_KEY_640X480: [u8; 10] =
        [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];

    #[test]
    fn vp8_descriptors_of_every_shape() {
        // Minimal: S = 1, PID = 0.
        let f = depacketize(Codec::Vp8, &[0x10, 0xAA]).unwrap();
        assert_eq!((f.data, f.starts_frame), (&[0xAA][..], true));
        // X, I with a 15-bit picture id, L, T: 1 + 1 + 2 + 1 + 1 bytes of descriptor.
        let f = depacketize(Codec::Vp8, &[0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0xBB]).unwrap();
        assert_eq!((f.data, f.starts_frame), (&[0xBB][..], true));
        // A continuation packet, and a later partition's start: not a frame start.
        assert!(!depacketize(Codec::Vp8, &[0x00, 1]).unwrap().starts_frame);
        assert!(!depacketize(Codec::Vp8, &[0x11, 1]).unwrap().starts_frame);
        assert_eq!(
            depacketize(Codec::Vp8, &[0x90, 0x80]),
            Err(DepacketizeError::Truncated)
        );
        assert_eq!(depacketize(Codec::Vp8, &[]), Err(DepacketizeError::Empty));
    }

    #[test]
    fn vp9_descriptors_of_every_shape() {
        // I (7-bit id), B: a non-flexible single-layer picture's first packet.
        let f = depacketize(Codec::Vp9, &[0x88, 0x05, 0xAA]).unwrap();
        assert_eq!(
            (f.data, f.starts_frame, f.upper_spatial_layer),
            (&[0xAA][..], true, false)
        );
        // I (15-bit), L (SID 1) + TL0PICIDX, E only: an upper layer's last packet.
        let f = depacketize(Codec::Vp9, &[0xA4, 0x80, 0x01, 0x02, 0x07, 0xBB]).unwrap();
        assert_eq!(
            (f.data, f.starts_frame, f.upper_spatial_layer),
            (&[0xBB][..], false, true)
        );
        // Flexible, predicted: two reference indices (N set on the first).
        let f = depacketize(Codec::Vp9, &[0x58, 0x03, 0x02, 0xCC]).unwrap();
        assert_eq!(f.data, &[0xCC]);
        // B and V: a scalability structure with one layer's size and one picture group entry
        // with one reference.
        let f = depacketize(
            Codec::Vp9,
            &[0x0A, 0x18, 0x02, 0x80, 0x01, 0xE0, 0x01, 0x04, 0x01, 0xDD],
        )
        .unwrap();
        assert_eq!(f.data, &[0xDD]);
        assert_eq!(
            depacketize(Codec::Vp9, &[0x8A, 0x80]),
            Err(DepacketizeError::Truncated)
        );
    }

    /// x264's parameter sets: 320×240 constrained baseline, and 1920×1080 high (cropped from
    /// 1088, scaling lists absent, emulation prevention bytes inside).
    pub(crate) const SPS_320X240: &str = "6742c00dd90141fb011000000300100000030320f142a480";
    const SPS_1080P_HIGH: &str = "67640028acd940780227e5c044000003000400000300c83c60c658";
    pub(crate) const PPS: &str = "68cb83cb20";

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn h264_packets_become_an_annex_b_access_unit() {
        let (sps, pps) = (hex(SPS_320X240), hex(PPS));
        let idr = [0x65u8, 0x88, 0x84, 0x00, 0x33];
        // STAP-A with SPS and PPS, then the IDR in two FU-A fragments.
        let mut stap = vec![0x78];
        for nal in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        let fu_start = [0x7c, 0x85, 0x88, 0x84];
        let fu_end = [0x7c, 0x45, 0x00, 0x33];
        assert!(depacketize(Codec::H264, &stap).unwrap().starts_frame);
        assert!(depacketize(Codec::H264, &fu_start).unwrap().starts_frame);
        assert!(!depacketize(Codec::H264, &fu_end).unwrap().starts_frame);
        let mut frame = Vec::new();
        for payload in [&stap[..], &fu_start[..], &fu_end[..]] {
            append_frame_data(Codec::H264, payload, &mut frame).unwrap();
        }
        let nals: Vec<&[u8]> = nal_units(&frame).collect();
        assert_eq!(nals, [&sps[..], &pps[..], &idr[..]]);
        assert_eq!(h264_parameter_sets(&frame), Some((&sps[..], &pps[..])));
        assert_eq!(keyframe_size(Codec::H264, &frame), Some((320, 240)));
        // A single non-IDR slice: not a keyframe.
        let mut inter = Vec::new();
        append_frame_data(Codec::H264, &[0x41, 0x9a, 0x02], &mut inter).unwrap();
        assert_eq!(keyframe_size(Codec::H264, &inter), None);
        // Truncated STAP-A, and a packetization mode we do not take.
        assert_eq!(
            append_frame_data(Codec::H264, &[0x78, 0x00, 0x09, 0x67], &mut frame),
            Err(DepacketizeError::Truncated)
        );
        assert_eq!(
            append_frame_data(Codec::H264, &[0x79, 0x00], &mut frame),
            Err(DepacketizeError::Unsupported)
        );
    }

    #[test]
    fn h264_sizes_with_cropping_and_high_profile() {
        let mut frame = vec![0, 0, 0, 1];
        frame.extend(hex(SPS_1080P_HIGH));
        frame.extend([0, 0, 0, 1, 0x65, 0x88]);
        assert_eq!(keyframe_size(Codec::H264, &frame), Some((1920, 1080)));
        // Garbage never panics.
        for cut in 0..hex(SPS_1080P_HIGH).len() {
            let _ = h264_sps_size(&hex(SPS_1080P_HIGH)[..cut]);
        }
        assert_eq!(h264_sps_size(&[0x67, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn keyframe_sizes() {
        assert_eq!(
            keyframe_size(Codec::Vp8, &VP8_KEY_640X480),
            Some((640, 480))
        );
        let mut inter = VP8_KEY_640X480;
        inter[0] |= 1;
        assert_eq!(keyframe_size(Codec::Vp8, &inter), None);
        assert_eq!(keyframe_size(Codec::Vp8, &VP8_KEY_640X480[..8]), None);
        // VP9 profile 0 keyframe: marker 10, profile 00, show_existing 0, frame_type 0,
        // show_frame 1, error_res 0, sync code, color space 001 (BT.601), color_range 0,
        // then width-1 = 319 and height-1 = 179 in 16 bits each.
        let mut bits = String::from("10000010");
        bits += "010010011000001101000010";
        bits += "0010";
        bits += &format!("{:016b}{:016b}", 319, 179);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let bytes: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect();
        assert_eq!(keyframe_size(Codec::Vp9, &bytes), Some((320, 180)));
        let mut inter = bytes.clone();
        inter[0] |= 0x04; // frame_type 1
        assert_eq!(keyframe_size(Codec::Vp9, &inter), None);
    }
}
