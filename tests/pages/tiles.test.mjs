// The SFU room page's tiles (public/lib/tiles.js) and the SDP helper that finds where the
// server wants our screen (public/lib/sdp.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pinnedTile, roomTiles, tileOfStream } from '../../public/lib/tiles.js';
import { receivingMids } from '../../public/lib/sdp.js';

const ann = { id: 'p000000000001', name: 'Ann', screen: null };
const bob = { id: 'p000000000002', name: 'Bob', screen: 'p000000000002-screen' };

test('a tile per other participant and per shared screen', () => {
  const tiles = roomTiles([ann, bob, { id: 'p000000000003', name: 'Me' }], 'p000000000003');
  assert.deepEqual(tiles.map((t) => [t.key, t.participant, t.source]), [
    [ann.id, ann.id, 'camera'],
    [bob.id, bob.id, 'camera'],
    [bob.screen, bob.id, 'screen'],
  ]);
  assert.deepEqual(roomTiles(null, 'x'), []);
  assert.deepEqual(roomTiles([null, { id: 7 }], 'x'), [], 'malformed entries are skipped');
});

test('streams find their tiles, also before the list names them', () => {
  assert.deepEqual(tileOfStream(bob.id, [ann, bob]), { key: bob.id, participant: bob.id, source: 'camera' });
  assert.deepEqual(tileOfStream(bob.screen, [ann, bob]), { key: bob.screen, participant: bob.id, source: 'screen' });
  assert.deepEqual(tileOfStream('p000000000009-screen', []), { key: 'p000000000009-screen', participant: 'p000000000009', source: 'screen' });
  assert.deepEqual(tileOfStream('p000000000009', []), { key: 'p000000000009', participant: 'p000000000009', source: 'camera' });
});

test('a shared screen is shown large unless the user pinned something', () => {
  const tiles = roomTiles([ann, bob], 'me');
  assert.equal(pinnedTile(tiles, null), bob.screen);
  assert.equal(pinnedTile(tiles, ann.id), ann.id, "the user's pin wins");
  assert.equal(pinnedTile(roomTiles([ann], 'me'), bob.id), null, 'a pin whose tile went is forgotten');
  assert.equal(pinnedTile(roomTiles([ann], 'me'), null), null);
  assert.equal(pinnedTile(tiles, ''), null, 'the user unpinned the screen');
});

test('the m-lines the server receives on', () => {
  const offer = [
    'v=0', 'o=- 1 2 IN IP4 0.0.0.0', 's=-', 't=0 0',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', 'a=recvonly',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=sendonly',
    'm=video 0 UDP/TLS/RTP/SAVPF 96', 'a=mid:2', 'a=recvonly',
    'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:s3', 'a=recvonly', '',
  ].join('\r\n');
  assert.deepEqual(receivingMids(offer), ['0', 's3'], 'stopped m-lines (port 0) are left out');
  assert.deepEqual(receivingMids(undefined), []);
});
