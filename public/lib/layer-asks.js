// The server's `publish_layers` asks (docs/protocol.md) applied to our camera's sender.
// Chromium forgets them: applying a remote offer switches every simulcast encoding back on,
// and a setParameters() made while a description is being applied can be silently undone.
// So the last ask per m-line is kept, asks are applied one at a time, never during a
// negotiation, and again after each one.
import { applyLayerAsk } from './layers.js';

/**
 * @param {{getPc: () => RTCPeerConnection | null, log: (event: string, detail: unknown) => void}} io
 *   the current media session, and the page's event log
 */
export function createLayerAsks({ getPc, log }) {
  const asks = new Map(); // mid → {rid: boolean}
  let negotiating = false;
  let work = Promise.resolve();

  /** Brings every sender in line with the asks (queued behind the previous round). */
  function apply() {
    const session = getPc();
    work = work.then(async () => {
      for (const [mid, active] of asks) {
        if (negotiating || !session || getPc() !== session) return;
        const sender = session.getTransceivers().find((t) => t.mid === mid)?.sender;
        if (!sender) continue;
        const params = sender.getParameters();
        const { encodings, changed } = applyLayerAsk(params.encodings, active);
        if (!changed) continue;
        params.encodings = encodings;
        await sender.setParameters(params)
          .then(() => log('sending-layers', Object.fromEntries(encodings.map((e) => [e.rid, e.active]))))
          .catch((err) => log('publish-layers', err.message));
      }
    });
    return work;
  }

  return {
    /** The server's `publish_layers` {mid, active}: which of our layers anybody needs. */
    ask(ask) {
      if (typeof ask?.mid !== 'string' || typeof ask.active !== 'object' || ask.active === null) return;
      log('publish-layers', ask.active);
      asks.set(ask.mid, ask.active);
      if (!negotiating) apply();
    },
    /**
     * Runs `negotiate` (which applies descriptions) with asks held back, a setParameters()
     * in flight finished first; then applies them again.
     */
    async around(negotiate) {
      negotiating = true;
      try {
        await work;
        return await negotiate();
      } finally {
        negotiating = false;
        apply();
      }
    },
    /** Settled once every ask made so far is applied (for tests). */
    settled: () => work,
    /** A new media session: the old asks are not for it. */
    clear() {
      asks.clear();
    },
  };
}
