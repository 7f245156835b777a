// What video layer a tile needs from the SFU (docs/protocol.md, `layer`), like LiveKit's
// adaptive stream: a thumbnail gets the low layer, a large tile the high one, a tile nobody can
// see nothing at all (the server then forwards none of it).

/** Tile heights (device pixels) up to which the low and medium layers are sharp enough. */
export const LOW_MAX_HEIGHT = 180;
export const MEDIUM_MAX_HEIGHT = 360;

/**
 * @param {{height: number, visible: boolean}} tile  rendered height in device pixels, and
 *   whether any of it is on screen (and the page is not hidden)
 * @returns {'off' | 'low' | 'medium' | 'high'}
 */
export function tileQuality({ height, visible }) {
  if (!visible || !(height > 0)) return 'off';
  if (height <= LOW_MAX_HEIGHT) return 'low';
  if (height <= MEDIUM_MAX_HEIGHT) return 'medium';
  return 'high';
}

/**
 * The server's `publish_layers` ask applied to a sender's encodings: each encoding whose rid
 * the ask names is switched on or off (a layer nobody watches costs no encoding and no uplink).
 * @param {RTCRtpEncodingParameters[]} encodings  from RTCRtpSender.getParameters()
 * @param {Record<string, boolean>} active  rid → send it
 * @returns {{encodings: RTCRtpEncodingParameters[], changed: boolean}}
 */
export function applyLayerAsk(encodings, active) {
  let changed = false;
  const next = (encodings ?? []).map((encoding) => {
    const wanted = encoding.rid !== undefined ? active?.[encoding.rid] : undefined;
    if (typeof wanted !== 'boolean' || encoding.active === wanted) return encoding;
    changed = true;
    return { ...encoding, active: wanted };
  });
  return { encodings: next, changed };
}
