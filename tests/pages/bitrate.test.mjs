// Publisher bitrate ceilings (public/lib/bitrate.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simulcastEncodings, videoMaxBitrate } from '../../public/lib/bitrate.js';

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

test('simulcast: the layers Chromium sends for the camera size, lowest first, each with its own ceiling', () => {
  const layers = simulcastEncodings({ width: 960, height: 540, frameRate: 30 });
  assert.deepEqual(layers.map((l) => [l.rid, l.scaleResolutionDownBy]), [['q', 4], ['h', 2], ['f', 1]]);
  assert.deepEqual(layers.map((l) => l.maxBitrate), [160_000, 450_000, 800_000]);
  assert.deepEqual(simulcastEncodings({ width: 1280, height: 720, frameRate: 15 }).map((l) => l.maxBitrate), [80_000, 225_000, 850_000]);
  // Below 960×540 Chromium sends two layers, below 480×270 one.
  assert.deepEqual(simulcastEncodings({ width: 640, height: 360, frameRate: 30 }).map((l) => l.rid), ['h', 'f']);
  assert.deepEqual(simulcastEncodings({ width: 640, height: 480, frameRate: 30 }).map((l) => l.rid), ['h', 'f']);
  assert.deepEqual(simulcastEncodings({ width: 320, height: 240, frameRate: 15 }), [{ maxBitrate: 125_000 }]);
  assert.equal(simulcastEncodings({}).length, 3, 'unknown settings: a 720p camera');
});
