//! SDP text rules of ours, on top of what str0m generates and parses (no I/O).

/// Media sections accepted in a join offer (a browser sends audio + video, maybe a screen):
/// every other member renegotiates for each one.
pub const MAX_OFFER_MEDIA: usize = 4;

/// How many media sections (`m=` lines) an SDP has.
pub fn media_sections(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=")).count()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn counts_media_sections() {
        assert_eq!(
            media_sections("v=0\r\nm=audio 9 x\r\na=mid:0\r\nm=video 9 x\r\n"),
            2
        );
        assert_eq!(media_sections("v=0\r\n"), 0);
    }
}
