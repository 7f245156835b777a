//! The SFU core on virtual time: str0m clients and the core exchange datagrams through a
//! fake network (`lab.rs`), so a call's seconds take milliseconds and every deadline is
//! exact. Each test says what a browser would see.

mod lab;
mod liveness;
mod moderation;
mod rooms;
mod screen;
mod sync;
