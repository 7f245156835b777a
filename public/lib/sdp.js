// What the pages need to know about an SDP without parsing all of it.

/** The session id of the `o=` line: the same for every offer/answer of one RTCPeerConnection. */
export function sessionId(sdp) {
  const match = /^o=\S+ (\d+) /m.exec(typeof sdp === 'string' ? sdp : '');
  return match ? match[1] : null;
}

/**
 * Does `sdp` come from the same remote RTCPeerConnection as `current` (a renegotiation, such
 * as an ICE restart), rather than from a new one (a new call)?
 */
export function sameSession(current, sdp) {
  const a = sessionId(current);
  return a !== null && a === sessionId(sdp);
}
