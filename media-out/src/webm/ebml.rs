//! Writing EBML, the encoding of Matroska and WebM: an element is an ID (1–4 bytes, its
//! length marker kept), a size (a variable-length integer of 1–8 bytes; all value bits set
//! means "unknown") and its payload; a master element's payload is its children.

pub(crate) const EBML: u32 = 0x1A45_DFA3;
pub(crate) const SEGMENT: u32 = 0x1853_8067;
pub(crate) const SEEK_HEAD: u32 = 0x114D_9B74;
pub(crate) const SEEK: u32 = 0x4DBB;
pub(crate) const SEEK_ID: u32 = 0x53AB;
pub(crate) const SEEK_POSITION: u32 = 0x53AC;
pub(crate) const INFO: u32 = 0x1549_A966;
pub(crate) const TIMECODE_SCALE: u32 = 0x2A_D7B1;
pub(crate) const DURATION: u32 = 0x4489;
pub(crate) const TRACKS: u32 = 0x1654_AE6B;
pub(crate) const TRACK_ENTRY: u32 = 0xAE;
pub(crate) const TRACK_NUMBER: u32 = 0xD7;
pub(crate) const TRACK_TYPE: u32 = 0x83;
pub(crate) const CLUSTER: u32 = 0x1F43_B675;
pub(crate) const TIMECODE: u32 = 0xE7;
pub(crate) const SIMPLE_BLOCK: u32 = 0xA3;
pub(crate) const BLOCK_GROUP: u32 = 0xA0;
pub(crate) const BLOCK: u32 = 0xA1;
pub(crate) const CUES: u32 = 0x1C53_BB6B;
pub(crate) const CUE_POINT: u32 = 0xBB;
pub(crate) const CUE_TIME: u32 = 0xB3;
pub(crate) const CUE_TRACK_POSITIONS: u32 = 0xB7;
pub(crate) const CUE_TRACK: u32 = 0xF7;
pub(crate) const CUE_CLUSTER_POSITION: u32 = 0xF1;
pub(crate) const VOID: u32 = 0xEC;
/// Cluster children that describe where the cluster was: wrong once it moves, so dropped.
pub(crate) const CLUSTER_POSITION: u32 = 0xA7;
pub(crate) const PREV_SIZE: u32 = 0xAB;
pub(crate) const CRC32: u32 = 0xBF;

/// The size of a master element whose end is not known when it starts (a live file's
/// Segment and Clusters): an 8-byte variable-length integer with every value bit set.
pub(crate) const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

pub(crate) fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// A size as an 8-byte variable length integer: wider than needed, but fixed.
pub(crate) fn put_size8(out: &mut Vec<u8>, size: u64) {
    let mut bytes = size.to_be_bytes();
    bytes[0] = 0x01;
    out.extend_from_slice(&bytes);
}

/// An element (a master too: its payload is its children) with an 8-byte size.
pub(crate) fn put_element(out: &mut Vec<u8>, id: u32, payload: &[u8]) {
    put_id(out, id);
    put_size8(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// An unsigned integer element, in as few bytes as it needs.
pub(crate) fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    put_element(out, id, &bytes[skip..]);
}

pub(crate) fn put_float(out: &mut Vec<u8>, id: u32, value: f64) {
    put_element(out, id, &value.to_be_bytes());
}

pub(crate) fn put_str(out: &mut Vec<u8>, id: u32, value: &str) {
    put_element(out, id, value.as_bytes());
}

/// A master element of unknown size: its children follow, and whatever ends it (a sibling,
/// the end of the file) is found by the reader.
pub(crate) fn open_unknown(out: &mut Vec<u8>, id: u32) {
    put_id(out, id);
    out.extend_from_slice(&UNKNOWN_SIZE);
}

// What the live writer adds (header, Info and track descriptions).
pub(crate) const EBML_VERSION: u32 = 0x4286;
pub(crate) const EBML_READ_VERSION: u32 = 0x42F7;
pub(crate) const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
pub(crate) const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
pub(crate) const DOC_TYPE: u32 = 0x4282;
pub(crate) const DOC_TYPE_VERSION: u32 = 0x4287;
pub(crate) const DOC_TYPE_READ_VERSION: u32 = 0x4285;
pub(crate) const MUXING_APP: u32 = 0x4D80;
pub(crate) const WRITING_APP: u32 = 0x5741;
pub(crate) const DATE_UTC: u32 = 0x4461;
pub(crate) const TRACK_UID: u32 = 0x73C5;
pub(crate) const FLAG_LACING: u32 = 0x9C;
pub(crate) const CODEC_ID: u32 = 0x86;
pub(crate) const CODEC_PRIVATE: u32 = 0x63A2;
pub(crate) const SEEK_PRE_ROLL: u32 = 0x56BB;
pub(crate) const VIDEO: u32 = 0xE0;
pub(crate) const PIXEL_WIDTH: u32 = 0xB0;
pub(crate) const PIXEL_HEIGHT: u32 = 0xBA;
pub(crate) const AUDIO: u32 = 0xE1;
pub(crate) const SAMPLING_FREQUENCY: u32 = 0xB5;
pub(crate) const CHANNELS: u32 = 0x9F;
