// Publisher bitrate ceilings (public/lib/bitrate.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { videoMaxBitrate } from '../../public/lib/bitrate.js';

test('ceilings grow with the picture and stay within presets', () => {
  assert.equal(videoMaxBitrate({ height: 240, frameRate: 30 }), 250_000);
  assert.equal(videoMaxBitrate({ height: 360, frameRate: 30 }), 450_000);
  assert.equal(videoMaxBitrate({ height: 720, frameRate: 30 }), 1_700_000);
  assert.equal(videoMaxBitrate({ height: 1080, frameRate: 30 }), 3_000_000);
  assert.equal(videoMaxBitrate({ height: 100, frameRate: 30 }), 160_000);
  let last = 0;
  for (const height of [120, 180, 240, 300, 360, 480, 540, 600, 720, 1080, 2160]) {
    const bps = videoMaxBitrate({ height, frameRate: 30 });
    assert.ok(bps >= last, `${height}p: ${bps} ≥ ${last}`);
    last = bps;
  }
});

test('lower frame rates get less, but never below half', () => {
  assert.equal(videoMaxBitrate({ height: 240, frameRate: 15 }), 125_000);
  assert.equal(videoMaxBitrate({ height: 240, frameRate: 24 }), 200_000);
  assert.equal(videoMaxBitrate({ height: 240, frameRate: 5 }), 125_000);
  assert.equal(videoMaxBitrate({ height: 240, frameRate: 60 }), 250_000);
  assert.equal(videoMaxBitrate({}), 1_700_000, 'unknown settings: a 720p camera');
});
