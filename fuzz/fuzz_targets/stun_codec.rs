//! The relay's STUN/TURN codec on arbitrary bytes: parsing never panics, every attribute
//! decoder copes with what the parser lets through, and a parsed message written back out
//! with the same attributes parses to the same attributes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turn_relay::stun::{
    attributes::{self as attr, decode_channel_number, decode_error, decode_family, decode_u32},
    channel_data::{stream_frame_len, ChannelData},
    classify, integrity, Message, MessageWriter,
};

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    let _ = stream_frame_len(data);
    if let Some(frame) = ChannelData::parse(data) {
        assert!(frame.data.len() <= data.len());
    }
    let Ok(message) = Message::parse(data) else {
        return;
    };
    for (t, value) in message.attributes() {
        match t {
            attr::XOR_PEER_ADDRESS | attr::XOR_MAPPED_ADDRESS | attr::XOR_RELAYED_ADDRESS => {
                let _ = attr::decode_xor_address(value, &message.transaction_id);
            }
            attr::LIFETIME | attr::PRIORITY => {
                let _ = decode_u32(value);
            }
            attr::CHANNEL_NUMBER => {
                let _ = decode_channel_number(value);
            }
            attr::ERROR_CODE => {
                let _ = decode_error(value);
            }
            attr::REQUESTED_TRANSPORT | attr::REQUESTED_ADDRESS_FAMILY => {
                let _ = decode_family(value);
            }
            _ => {}
        }
    }
    let _ = message.unknown_required().count();
    let _ = message.check_integrity(&integrity::long_term_key("alice", "rtc.local", "pw"));
    if let Some(at) = message.fingerprint_offset() {
        let _ = integrity::verify_fingerprint(data, at);
    }
    // Round trip: the same attributes, written by our writer, read back the same.
    let attributes: Vec<(u16, &[u8])> = message.attributes().collect();
    if attributes.iter().any(|(_, v)| v.len() > u16::MAX as usize) {
        return;
    }
    let mut again = Vec::new();
    let mut writer = MessageWriter::new(
        &mut again,
        message.method,
        message.class,
        message.transaction_id,
    );
    for (t, value) in &attributes {
        writer.add(*t, value);
    }
    let reparsed = Message::parse(&again).expect("what we write parses");
    assert_eq!(
        (reparsed.method, reparsed.class),
        (message.method, message.class)
    );
    let reread: Vec<(u16, &[u8])> = reparsed.attributes().collect();
    assert_eq!(reread, attributes);
});
