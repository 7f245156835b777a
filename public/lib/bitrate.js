// The most a camera stream may send to the SFU, by its size and frame rate.
//
// Without a ceiling a publisher's encoder takes whatever its bandwidth estimate allows, and
// toward the SFU that estimate overshoots a slow uplink: in the network lab a participant on
// a 500 kbit/s link (3 % loss, 150 ms RTT) sent enough to fill it, queued ~0.5 s, and everyone
// froze for seconds (tests/lab/sfu.test.mjs, docs/BENCHMARKS.md "SFU page vs full mesh").
//
// The ceilings also keep a small room within a slow *downlink*: the SFU picks each
// subscriber's layer by its tile's size, not yet by its bandwidth, and a camera below 480×270
// sends one stream, so two 320×240 @ 15 fps streams plus audio must fit in 500 kbit/s
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

/**
 * The simulcast encodings for a camera of this size, lowest first (the SFU numbers layers in
 * this order, docs/sfu.md), each with the ceiling of its own size: `q` a quarter, `h` half and
 * `f` full resolution from 960×540 up, `h` and `f` from 480×270 up, below that one stream
 * without a rid. These are the layer counts Chromium itself allows per input size (libwebrtc's
 * simulcast table): asked for three layers of a 640×360 camera, it sends only the lowest two,
 * 90p and 180p, and never the full picture (measured with this page's fake camera).
 * @param {{width?: number, height?: number, frameRate?: number}} settings  a video track's getSettings()
 * @returns {RTCRtpEncodingParameters[]}
 */
export function simulcastEncodings({ width, height = 720, frameRate = 30 } = {}) {
  const pixels = (width ?? Math.round((height * 16) / 9)) * height;
  const scales = pixels >= 960 * 540 ? [['q', 4], ['h', 2], ['f', 1]] : pixels >= 480 * 270 ? [['h', 2], ['f', 1]] : [];
  if (!scales.length) return [{ maxBitrate: videoMaxBitrate({ height, frameRate }) }];
  return scales.map(([rid, scale]) => ({ rid, scaleResolutionDownBy: scale, maxBitrate: videoMaxBitrate({ height: height / scale, frameRate }) }));
}
