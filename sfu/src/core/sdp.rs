//! SDP text rules of ours, on top of what str0m generates and parses (no I/O).

use std::collections::HashMap;

pub use crate::api::SdpRuleError;

/// Media sections accepted in a join offer (a browser sends audio + video, maybe a screen):
/// every other member renegotiates for each one.
pub const MAX_OFFER_MEDIA: usize = 4;

/// How many media sections (`m=` lines) an SDP has.
pub fn media_sections(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=")).count()
}

/// Each media section's `a=mid` and the RIDs it offers to send as simulcast layers, in the
/// order of its `a=simulcast:send` list (the order str0m's `MediaAdded` gives them, which
/// numbers our layers; empty without simulcast). Alternatives (`q,x`) count by their first
/// RID; a paused one (`~q`) is a layer all the same.
pub fn offered_media(sdp: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for line in sdp.lines() {
        let text = line.trim_end_matches('\r');
        if text.starts_with("m=") {
            out.push((None, Vec::new()));
            continue;
        }
        let Some((mid, rids)) = out.last_mut() else {
            continue;
        };
        if let Some(value) = text.strip_prefix("a=mid:") {
            *mid = Some(value.trim().to_owned());
        } else if let Some(value) = text.strip_prefix("a=simulcast:send ") {
            let list = value.split_whitespace().next().unwrap_or_default();
            *rids = list
                .split(';')
                .filter_map(|group| group.split(',').next())
                .map(|rid| rid.trim_start_matches('~'))
                .filter(|rid| !rid.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    out.into_iter()
        .filter_map(|(mid, rids)| Some((mid?, rids)))
        .collect()
}

/// What an `a=rtpmap` and `a=fmtp` line say about one payload type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PayloadMeaning {
    rtpmap: Option<String>,
    fmtp: Option<String>,
}

impl PayloadMeaning {
    fn describe(&self) -> String {
        match (&self.rtpmap, &self.fmtp) {
            (Some(map), Some(fmtp)) => format!("{map} {fmtp}"),
            (Some(map), None) => map.clone(),
            (None, Some(fmtp)) => fmtp.clone(),
            (None, None) => String::new(),
        }
    }
}

/// A payload type means one thing in a whole bundle (RFC 8843 §9.1): one `a=rtpmap` and one
/// `a=fmtp`, the same in every m-line that describes it, as every browser offers. str0m
/// assumes so and panics on an SDP that maps one payload type to two codecs ("Pt locked
/// multiple times"), which a fuzzed offer found: such an SDP is refused here first.
pub fn check_payload_types(sdp: &str) -> Result<(), SdpRuleError> {
    let mut bundle: HashMap<u8, PayloadMeaning> = HashMap::new();
    let mut section: HashMap<u8, PayloadMeaning> = HashMap::new();
    let conflict = |pt: u8, first: &PayloadMeaning, second: &PayloadMeaning| {
        SdpRuleError::PayloadTypeConflict {
            pt,
            first: first.describe(),
            second: second.describe(),
        }
    };
    let mut close_section = |section: &mut HashMap<u8, PayloadMeaning>| {
        for (pt, meaning) in section.drain() {
            match bundle.get(&pt) {
                Some(known) if *known != meaning => return Err(conflict(pt, known, &meaning)),
                Some(_) => {}
                None => {
                    bundle.insert(pt, meaning);
                }
            }
        }
        Ok(())
    };
    for line in sdp.lines() {
        if line.starts_with("m=") {
            close_section(&mut section)?;
            continue;
        }
        let (attribute, rest) = if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
            (false, rest)
        } else {
            continue;
        };
        let (pt, value) = rest.split_once(' ').unwrap_or((rest, ""));
        // What is not a payload type str0m refuses itself.
        let Ok(pt) = pt.parse::<u8>() else {
            continue;
        };
        let meaning = section.entry(pt).or_default();
        let mut said = meaning.clone();
        let slot = if attribute {
            &mut said.rtpmap
        } else {
            &mut said.fmtp
        };
        let repeated = slot.is_some();
        *slot = Some(value.trim().to_ascii_lowercase());
        // Said twice in one m-line, differently.
        if repeated && said != *meaning {
            return Err(conflict(pt, meaning, &said));
        }
        *meaning = said;
    }
    close_section(&mut section)
}

/// Direction of an m-line from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OurDirection {
    RecvOnly,
    Inactive,
}

/// The join answer without sends of ours on the browser's own m-lines.
///
/// str0m answers with the offer's direction inverted (`sendrecv` stays `sendrecv`, a viewer's
/// `recvonly` becomes `sendonly`) and announces a random `a=msid` + SSRCs there, so Chromium
/// fires `ontrack` for streams we never send. Subscriptions always get m-lines of their own,
/// so here we only receive: `sendrecv` → `recvonly`, `sendonly` → `inactive`, and the
/// announcement of our would-be stream goes. Returns the SDP and each changed m-line's
/// `(mid, direction)`, which the caller must also apply to its own state.
pub fn receive_only_answer(sdp: &str) -> (String, Vec<(String, OurDirection)>) {
    let mut out = String::with_capacity(sdp.len());
    let mut changed = Vec::new();
    let mut in_media = false;
    let mut mid: Option<String> = None;
    let mut direction: Option<OurDirection> = None;
    let mut flush = |mid: &mut Option<String>, direction: &mut Option<OurDirection>| {
        if let (Some(m), Some(d)) = (mid.take(), direction.take()) {
            changed.push((m, d));
        }
    };
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end_matches(['\r', '\n']);
        if text.starts_with("m=") {
            flush(&mut mid, &mut direction);
            in_media = true;
        }
        if in_media {
            if let Some(m) = text.strip_prefix("a=mid:") {
                mid = Some(m.to_owned());
            }
            let replaced = match text {
                "a=sendrecv" => Some(("a=recvonly", OurDirection::RecvOnly)),
                "a=sendonly" => Some(("a=inactive", OurDirection::Inactive)),
                _ => None,
            };
            if let Some((new, dir)) = replaced {
                direction = Some(dir);
                out.push_str(new);
                out.push_str(&line[text.len()..]);
                continue;
            }
            let announces_our_stream = text.starts_with("a=msid:")
                || text.starts_with("a=ssrc:")
                || text.starts_with("a=ssrc-group:");
            if announces_our_stream {
                continue;
            }
        }
        out.push_str(line);
    }
    flush(&mut mid, &mut direction);
    (out, changed)
}

/// Chromium's receive-side estimate instead of transport-wide feedback on what we send.
///
/// In each m-section we send on (`a=sendonly` in our offer: a subscription), the
/// transport-wide sequence number extension and `transport-cc` feedback are left out, so the
/// browser's answer leaves them out too, str0m writes no transport sequence number on those
/// packets (it writes one only where the m-line's negotiated extensions have it), and
/// Chromium estimates what reaches it itself (abs-send-time, still offered) and says so in
/// REMB. Publishers' m-lines keep transport-wide feedback: their browsers' send-side
/// estimate runs on ours. Why: docs/sfu.md, "The browser's own estimate".
pub fn without_transport_cc(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut section = String::new();
    let flush = |section: &mut String, out: &mut String| {
        let sends = section
            .lines()
            .any(|l| l.trim_end_matches('\r') == "a=sendonly");
        for line in section.split_inclusive('\n') {
            let text = line.trim_end_matches(['\r', '\n']);
            let feedback = (text.starts_with("a=extmap:") && text.contains("transport-wide-cc"))
                || (text.starts_with("a=rtcp-fb:") && text.ends_with(" transport-cc"));
            if !(sends && feedback) {
                out.push_str(line);
            }
        }
        section.clear();
    };
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push_str(line);
    }
    flush(&mut section, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_media_lists_each_mid_with_its_simulcast_send_rids_in_order() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:f send\r\n\
                   a=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h,x;~f\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert_eq!(
            offered_media(sdp),
            vec![
                ("0".to_owned(), vec![]),
                // The simulcast list's order, not the a=rid lines'.
                (
                    "1".to_owned(),
                    vec!["q".to_owned(), "h".to_owned(), "f".to_owned()]
                ),
                ("2".to_owned(), vec![]),
            ]
        );
        assert!(offered_media("v=0\r\n").is_empty());
    }

    /// An m-line of a video section with these payload lines.
    fn video(mid: u8, payloads: &[&str]) -> String {
        let mut m = format!("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:{mid}\r\n");
        for line in payloads {
            m.push_str(line);
            m.push_str("\r\n");
        }
        m
    }

    #[test]
    fn a_payload_type_means_one_thing_in_the_whole_bundle() {
        let vp8 = [
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
        ];
        let audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                     a=fmtp:111 minptime=10;useinbandfec=1\r\n";
        // As browsers offer: the same table in every m-line of a kind (case aside).
        let browser = format!("v=0\r\n{audio}{}{}", video(1, &vp8), video(2, &vp8));
        assert_eq!(check_payload_types(&browser), Ok(()));
        let lower = video(2, &["a=rtpmap:96 vp8/90000"]);
        assert_eq!(check_payload_types(&(video(1, &vp8) + &lower)), Ok(()));

        let conflict = |sdp: &str| match check_payload_types(sdp) {
            Err(SdpRuleError::PayloadTypeConflict { pt, .. }) => Some(pt),
            Ok(()) => None,
        };
        // Two codecs on one payload type, in two m-lines (the fuzzed offer) or in one.
        let vp9 = video(2, &["a=rtpmap:96 VP9/90000"]);
        assert_eq!(conflict(&(video(1, &vp8) + &vp9)), Some(96));
        let both = video(1, &["a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP9/90000"]);
        assert_eq!(conflict(&both), Some(96));
        // A retransmission payload type repairing another codec, or taking a media one.
        let rtx_elsewhere = video(2, &["a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=98"]);
        assert_eq!(conflict(&(video(1, &vp8) + &rtx_elsewhere)), Some(97));
        let rtx_on_vp8 = video(2, &["a=rtpmap:96 rtx/90000", "a=fmtp:96 apt=100"]);
        assert_eq!(conflict(&(video(1, &vp8) + &rtx_on_vp8)), Some(96));
        // Format parameters count too: H.264 profiles differ in them alone.
        let h264 = |profile: &str| {
            [
                "a=rtpmap:102 H264/90000".to_owned(),
                format!("a=fmtp:102 profile-level-id={profile}"),
            ]
        };
        let [a0, a1] = h264("42e01f");
        let [b0, b1] = h264("640c1f");
        let profiles = video(1, &[&a0, &a1]) + &video(2, &[&b0, &b1]);
        assert_eq!(conflict(&profiles), Some(102));
        // Not a payload type: left to str0m's parser.
        assert_eq!(
            check_payload_types("m=video 9 X 96\r\na=rtpmap:x VP8/90000\r\n"),
            Ok(())
        );
    }

    #[test]
    fn join_answer_receives_only() {
        let sdp = "v=0\r\na=msid-semantic: WMS s1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\na=msid:s1 t1\r\n\
            a=ssrc:5 cname:x\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=msid:s1 t2\r\n\
            a=ssrc-group:FID 6 7\r\na=ssrc:6 cname:x\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\n";
        let (out, changed) = receive_only_answer(sdp);
        assert_eq!(
            out,
            "v=0\r\na=msid-semantic: WMS s1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
            a=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\n"
        );
        assert_eq!(
            changed,
            vec![
                ("0".to_owned(), OurDirection::RecvOnly),
                ("1".to_owned(), OurDirection::Inactive)
            ]
        );
    }

    #[test]
    fn sends_without_transport_wide_feedback() {
        let twcc = "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        let section = |mid: u8, direction: &str| {
            format!(
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\n\
                a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
                {twcc}a={direction}\r\na=rtpmap:96 VP8/90000\r\n\
                a=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 goog-remb\r\n"
            )
        };
        let sdp = format!(
            "v=0\r\n{}{}",
            section(0, "recvonly"),
            section(1, "sendonly")
        );
        let out = without_transport_cc(&sdp);
        // The publisher's m-line keeps it.
        assert!(out.starts_with(&format!("v=0\r\n{}", section(0, "recvonly"))));
        let sent = &out[out.find("a=mid:1").unwrap()..];
        assert!(!sent.contains("transport"), "{sent}");
        assert!(sent.contains("abs-send-time") && sent.contains("goog-remb"));
        assert_eq!(
            out.len(),
            sdp.len() - twcc.len() - "a=rtcp-fb:96 transport-cc\r\n".len()
        );
    }

    #[test]
    fn counts_media_sections() {
        assert_eq!(
            media_sections("v=0\r\nm=audio 9 x\r\na=mid:0\r\nm=video 9 x\r\n"),
            2
        );
        assert_eq!(media_sections("v=0\r\n"), 0);
    }
}
