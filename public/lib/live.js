// Live viewing of SFU rooms (docs/live.md), as pages show it. Pure functions; sfu.js and
// live.js bind them.
//
// In the room: a room is live-ready when its first participant joins with `live: true` (its
// video is then H.264, which HLS players decode); a participant allowed to puts it on air,
// everyone sees the LIVE chip and the viewers' link. The state comes from the join answer
// (`live_room`, `live`) and the `live` event ({on, by, since, watch, reason}).
//
// For viewers: live.html polls the session's streams.json and keeps one player per stream.

const REASONS = {
  stopped: 'ended',
  room_empty: 'ended: nobody left to stream',
  room_ended: 'ended: a moderator ended the room',
};

/** What the LIVE chip and the button show. `liveRoom`: the room can go live at all. */
export function liveView(state, liveRoom, origin) {
  const on = Boolean(state?.on);
  const watch = on && typeof state?.watch === 'string' && state.watch.startsWith('/') ? state.watch : null;
  return {
    buttonHidden: !liveRoom,
    pressed: on,
    buttonTitle: on ? 'End the live stream' : 'Go live: anyone with the viewers\u2019 link can watch',
    chipHidden: !on,
    link: watch ? `${origin}${watch}` : null,
    chipTitle: on ? `On air${state.by ? ` (started by ${state.by})` : ''}: open or share the viewers\u2019 link` : '',
  };
}

/** A line for the page's notices when the state changes from `before` to `after`, or null. */
export function liveNotice(before, after) {
  const was = Boolean(before?.on);
  const is = Boolean(after?.on);
  if (is && !was) return `The room is live${after.by ? ` (started by ${after.by})` : ''}.`;
  if (was && !is) return `The live stream ${REASONS[after?.reason] ?? 'ended'}.`;
  return null;
}

/** A refused `live` request, in words. */
export function liveError(error) {
  switch (error?.code) {
    case 'live_not_allowed': return 'Your invitation does not allow putting this room on air.';
    case 'not_live_room': return 'This room cannot go live: it was not opened as a live room (its video is not H.264).';
    case 'nothing_to_stream': return 'Nobody in the room sends audio or video yet.';
    default: return error?.message ?? 'The live stream could not be started.';
  }
}

/**
 * `codecs` (RTCRtpSender/Receiver.getCapabilities('video').codecs) with H.264 first, for
 * `setCodecPreferences` in a live room; `null` if the browser has no H.264.
 */
export function preferH264(codecs) {
  const isH264 = (c) => c.mimeType?.toLowerCase() === 'video/h264';
  if (!codecs?.some(isH264)) return null;
  return [...codecs.filter(isH264), ...codecs.filter((c) => !isH264(c))];
}

/**
 * The players a viewer page must add and remove to show `list` (streams.json's `streams`)
 * when it shows `shown` (participant ids). Ended streams are removed.
 */
export function streamChanges(shown, list) {
  const live = (Array.isArray(list) ? list : []).filter((s) => typeof s?.participant === 'string' && typeof s?.playlist === 'string' && !s.ended);
  const wanted = new Set(live.map((s) => s.participant));
  const have = new Set(shown);
  return {
    add: live.filter((s) => !have.has(s.participant)),
    remove: [...have].filter((id) => !wanted.has(id)),
  };
}

/** What a viewer is told when the page cannot play (`canMse`: Media Source Extensions). */
export function playbackSupport({ canMse, canNative, canH264Opus }) {
  if (canMse && canH264Opus) return { ok: true, how: 'hls.js' };
  if (canNative) return { ok: true, how: 'native' };
  return {
    ok: false,
    how: null,
    message: 'This browser cannot play the stream: it needs H.264 video and Opus audio in MP4 (Chrome, Edge, Firefox, or Safari 17+).',
  };
}

/** p50 and p95 of `values` (ms), for the page's latency line; null when empty. */
export function percentiles(values) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!sorted.length) return null;
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p95: at(0.95), count: sorted.length };
}
