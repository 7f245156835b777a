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

/**
 * The mids of the open m-sections of `sdp` that say `a=recvonly`: in an offer from the SFU,
 * the ones it receives on (where the page is to send, e.g. its shared screen).
 */
export function receivingMids(sdp) {
  if (typeof sdp !== 'string') return [];
  return sdp.split(/\r?\nm=/).slice(1)
    .filter((section) => !/^\S+ 0 /.test(section))
    .filter((section) => /^a=recvonly\s*$/m.test(section))
    .map((section) => /^a=mid:(\S+)/m.exec(section)?.[1])
    .filter(Boolean);
}
