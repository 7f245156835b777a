// Camera, microphone and audio levels, shared by the pages.

export function stopStream(stream) {
  stream?.getTracks().forEach((t) => t.stop());
}

/**
 * Opens camera and microphone, falling back to audio only or video only. Throws an Error
 * whose message can be shown to the user.
 * @returns {Promise<{stream: MediaStream, missing: null | 'audio' | 'video'}>}
 */
export async function openCameraAndMic(video = { width: { ideal: 1280 }, height: { ideal: 720 } }) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot access camera and microphone here (HTTPS is required).');
  }
  const attempts = [
    [{ audio: true, video }, null],
    [{ audio: true, video: false }, 'video'],
    [{ audio: false, video }, 'audio'],
  ];
  let lastErr;
  for (const [constraints, missing] of attempts) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(constraints), missing };
    } catch (err) {
      lastErr = err;
      if (err?.name === 'NotAllowedError' || err?.name === 'SecurityError') break;
    }
  }
  throw new Error(
    lastErr?.name === 'NotAllowedError'
      ? 'Camera and microphone access was denied. Allow it in the browser and try again.'
      : `Cannot open camera or microphone (${lastErr?.name ?? 'unknown error'}).`,
  );
}

// Audio level meters: one AudioContext, one analyser per stream, one timer for all of them.
let audioCtx = null;
const meters = new Set();
let meterTimer = 0;

function context() {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  return audioCtx;
}

/** Calls `onLevel(rms 0..1)` ten times a second for `stream`'s audio; null without audio. */
export function levelMeter(stream, onLevel) {
  if (!stream?.getAudioTracks().length) return null;
  const source = context().createMediaStreamSource(stream);
  const analyser = context().createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const meter = { analyser, source, data: new Uint8Array(analyser.fftSize), onLevel };
  meters.add(meter);
  if (!meterTimer) meterTimer = setInterval(measure, 100);
  return meter;
}

export function dropMeter(meter) {
  if (!meter) return;
  meters.delete(meter);
  try {
    meter.source.disconnect();
  } catch {
    /* already disconnected */
  }
  if (!meters.size) {
    clearInterval(meterTimer);
    meterTimer = 0;
  }
}

function measure() {
  for (const m of meters) {
    m.analyser.getByteTimeDomainData(m.data);
    let sum = 0;
    for (const v of m.data) {
      const x = (v - 128) / 128;
      sum += x * x;
    }
    m.onLevel(Math.sqrt(sum / m.data.length));
  }
}
