//! WebM: a live writer for recordings made on the server, and the rewrite that makes a live
//! WebM (ours, or a browser's MediaRecorder's) seekable.

mod ebml;
mod seekable;
mod writer;

pub use seekable::{make_seekable, Seekable, WebmError};
pub use writer::{AudioTrack, VideoCodec, VideoTrack, WebmWriter};
