//! The media path of one packet, in the order it is taken:
//!
//! - [`ingest`]: a publisher's packet becomes an [`ingest::Incoming`] (codec, keyframe,
//!   end-to-end extensions), once;
//! - [`publication`]: the track it belongs to (codec cache, [`layers`] with their
//!   keyframe-request throttles, loss, sinks);
//! - [`fanout`]: to every [`sink`] of the publication, subscriber or tap;
//! - [`capture`]: when the packet was captured, on our clock (for the subscribers' sender
//!   reports, which lip sync reads);
//! - [`subscription`]: per subscriber, negotiation state, keyframe gate and the write to
//!   its connection, with [`munger`] choosing the layer and rewriting sequence numbers,
//!   timestamps, VP8 picture ids and payload types;
//! - [`keyframe`]: detection and the request throttle;
//! - [`allocator`]: how a subscriber's bandwidth estimate is shared between its videos,
//!   and [`probe`]: finding room above an estimate the browser gives (REMB) by sending more;
//! - [`speaker`]: speech levels from the audio-level header extension, for active speakers.
//!
//! Nothing here owns a connection or reads a clock; the core passes them in.

pub mod allocator;
pub mod capture;
pub mod fanout;
pub mod ingest;
pub mod keyframe;
pub mod layers;
pub mod loss_control;
pub mod munger;
pub mod probe;
pub mod publication;
pub mod sink;
pub mod speaker;
pub mod subscription;
