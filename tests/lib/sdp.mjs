// A browser-like SDP offer for signaling tests (no real media behind it).

/**
 * An offer of `media` m-lines (audio, video, audio, …) in `direction` (`sendrecv`: a
 * publisher; `recvonly`: a viewer).
 */
export function offer(media = 2, direction = 'sendrecv') {
  const sends = direction === 'sendrecv' || direction === 'sendonly';
  const lines = [
    'v=0',
    'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    `a=group:BUNDLE ${[...Array(media).keys()].join(' ')}`,
    'a=msid-semantic: WMS stream',
  ];
  for (let mid = 0; mid < media; mid++) {
    const audio = mid % 2 === 0;
    lines.push(
      audio ? 'm=audio 9 UDP/TLS/RTP/SAVPF 111' : 'm=video 9 UDP/TLS/RTP/SAVPF 96',
      'c=IN IP4 0.0.0.0',
      'a=rtcp:9 IN IP4 0.0.0.0',
      'a=ice-ufrag:tEsT',
      'a=ice-pwd:0123456789abcdefghijklmn',
      'a=ice-options:trickle',
      'a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC',
      'a=setup:actpass',
      `a=mid:${mid}`,
      `a=${direction}`,
      ...(sends ? [`a=msid:stream track${mid}`] : []),
      'a=rtcp-mux',
      ...(audio
        ? ['a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=10;useinbandfec=1']
        : ['a=rtpmap:96 VP8/90000', 'a=rtcp-fb:96 nack', 'a=rtcp-fb:96 nack pli']),
      ...(sends ? [`a=ssrc:${1000 + mid} cname:test`] : []),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}
