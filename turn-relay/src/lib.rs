//! TURN relay (work in progress).
