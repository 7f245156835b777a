// Live viewing as the pages show it (public/lib/live.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { liveError, liveNotice, liveView, percentiles, playbackSupport, preferH264, streamChanges } from '../../public/lib/live.js';

const ORIGIN = 'https://call.example';

test('the button only where the room can go live; the chip and link while on air', () => {
  assert.equal(liveView(null, false, ORIGIN).buttonHidden, true);
  const off = liveView(null, true, ORIGIN);
  assert.deepEqual([off.buttonHidden, off.pressed, off.chipHidden, off.link], [false, false, true, null]);
  const on = liveView({ on: true, by: 'Ann', watch: '/live.html?k=00ff' }, true, ORIGIN);
  assert.deepEqual([on.pressed, on.chipHidden, on.link], [true, false, 'https://call.example/live.html?k=00ff']);
  assert.match(on.chipTitle, /started by Ann/);
  // A link that is not a path on this server is not shown.
  assert.equal(liveView({ on: true, watch: 'https://evil.example/' }, true, ORIGIN).link, null);
  assert.equal(liveView({ on: true, watch: 42 }, true, ORIGIN).link, null);
});

test('notices when the room goes on and off air, and errors in words', () => {
  assert.equal(liveNotice(null, { on: true, by: 'Ann' }), 'The room is live (started by Ann).');
  assert.equal(liveNotice({ on: true }, { on: true }), null);
  assert.equal(liveNotice({ on: true }, { on: false, reason: 'room_empty' }), 'The live stream ended: nobody left to stream.');
  assert.equal(liveNotice({ on: true }, { on: false, reason: 'something new' }), 'The live stream ended.');
  assert.match(liveError({ code: 'not_live_room' }), /not opened as a live room/);
  assert.match(liveError({ code: 'live_not_allowed' }), /does not allow/);
  assert.equal(liveError({ code: 'other', message: 'odd' }), 'odd');
  assert.equal(liveError(undefined), 'The live stream could not be started.');
});

test('H.264 first in a live room, the rest kept in order; null without H.264', () => {
  const codecs = [
    { mimeType: 'video/VP8' },
    { mimeType: 'video/rtx' },
    { mimeType: 'video/H264', sdpFmtpLine: 'profile-level-id=42e01f' },
    { mimeType: 'video/VP9' },
    { mimeType: 'video/H264', sdpFmtpLine: 'profile-level-id=640c1f' },
  ];
  assert.deepEqual(preferH264(codecs).map((c) => c.mimeType), ['video/H264', 'video/H264', 'video/VP8', 'video/rtx', 'video/VP9']);
  assert.equal(preferH264([{ mimeType: 'video/VP8' }]), null);
  assert.equal(preferH264(undefined), null);
});

test('players follow the session: new streams added, ended or gone ones removed', () => {
  const a = { participant: 'p1', playlist: 'p1/index.m3u8', name: 'Ann' };
  const b = { participant: 'p2', playlist: 'p2/index.m3u8', name: 'Bob' };
  assert.deepEqual(streamChanges([], [a, b]), { add: [a, b], remove: [] });
  assert.deepEqual(streamChanges(['p1', 'p2'], [a, { ...b, ended: true }]), { add: [], remove: ['p2'] });
  assert.deepEqual(streamChanges(['p1'], [{ participant: 3 }, null, b]), { add: [b], remove: ['p1'] });
  assert.deepEqual(streamChanges(['p1'], 'nonsense'), { add: [], remove: ['p1'] });
});

test('what a viewer is told about playback, and latency percentiles', () => {
  assert.deepEqual(playbackSupport({ canMse: true, canNative: false, canH264Opus: true }), { ok: true, how: 'hls.js' });
  assert.deepEqual(playbackSupport({ canMse: false, canNative: true, canH264Opus: false }), { ok: true, how: 'native' });
  const none = playbackSupport({ canMse: true, canNative: false, canH264Opus: false });
  assert.equal(none.ok, false);
  assert.match(none.message, /H\.264 video and Opus audio/);
  assert.equal(percentiles([]), null);
  assert.deepEqual(percentiles([300, 100, 200, NaN, 400]), { p50: 300, p95: 400, count: 4 });
});
