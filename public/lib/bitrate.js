// The most a camera stream may send to the SFU, by its size and frame rate.
//
// Without a ceiling a publisher's encoder takes whatever its bandwidth estimate allows, and
// toward the SFU that estimate overshoots a slow uplink: in the network lab a participant on
// a 500 kbit/s link (3 % loss, 150 ms RTT) sent enough to fill it, queued ~0.5 s, and everyone
// froze for seconds (tests/lab/sfu.test.mjs, docs/BENCHMARKS.md "SFU page vs full mesh").
//
// The ceilings also keep a small room within a slow *downlink*: until the SFU estimates each
// subscriber's bandwidth and picks layers for it (simulcast, issue 10), it forwards every
// publisher's stream whole, so two 320×240 @ 15 fps streams plus audio must fit in 500 kbit/s
// (at 188 kbit/s each they did not, in one run of three). The figures follow common SFU
// presets (LiveKit's VideoPresets, at 30 fps), scaled with the frame rate down to half.

const PRESETS = [
  // [max height, kbit/s at 30 fps]
  [180, 160],
  [240, 250],
  [360, 450],
  [540, 800],
  [720, 1700],
  [Infinity, 3000],
];

/**
 * @param {{height?: number, frameRate?: number}} settings  a video track's getSettings()
 * @returns {number} bits per second for RTCRtpEncodingParameters.maxBitrate
 */
export function videoMaxBitrate({ height = 720, frameRate = 30 } = {}) {
  const kbps = PRESETS.find(([maxHeight]) => height <= maxHeight)[1];
  const fpsFactor = Math.min(1, Math.max(0.5, frameRate / 30));
  return Math.round(kbps * fpsFactor) * 1000;
}
