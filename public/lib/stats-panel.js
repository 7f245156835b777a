// The statistics panel of both call pages: charts of the page's own connection over the last
// minutes (bit rate, loss, round trip, jitter, frame rate, resolution per stream) and the path
// in use. lib/stats.js turns getStats() into series, lib/charts.js draws them; this file
// samples and lays out. Sampling runs during the whole call, so opening the panel shows the
// minutes before; the charts are drawn only while it is open.
//
// Test hooks: [data-testid] stats-panel, stats-path, stats-chart (data-chart = its id);
// window.__rtc.stats.charts() → [{id, labels, points}].

import { chartSection, createChart, loadCharts } from './charts.js';
import { addReading, chartData, CHARTS, createHistory, describePair, readReport } from './stats.js';

const SAMPLE_MS = 1000;

/**
 * @param {object} options
 * @param {() => RTCPeerConnection | null} options.getPc the page's current connection
 * @param {(mid: string | undefined, kind: string) => string} [options.nameOfMid] who a received stream is from
 * @param {object} options.hooks the page's window.__rtc
 * @param {HTMLElement} [options.button] the page's button that opens and closes the panel
 * @param {(history: object) => void} [options.onSample] called after every reading (e.g. a status chip)
 * @returns {{element: HTMLElement, start(): void, stop(): void, toggle(open?: boolean): Promise<void>}}
 */
export function createStatsPanel({ getPc, nameOfMid, hooks, button, onSample = () => {} }) {
  const element = document.createElement('aside');
  element.className = 'stats-panel';
  element.hidden = true;
  element.dataset.testid = 'stats-panel';
  element.setAttribute('aria-label', 'Connection statistics');
  element.innerHTML = `
    <header class="stats-head">
      <h3>Connection statistics</h3>
      <button type="button" class="stats-close" title="Close" aria-label="Close statistics">×</button>
    </header>
    <p class="stats-path">Path: <span data-testid="stats-path">no connection yet</span></p>
    <div class="stats-charts"></div>`;
  const pathText = element.querySelector('[data-testid="stats-path"]');
  const slots = CHARTS.map((chart) => {
    const section = chartSection(chart.id, chart.title, chart.unit);
    element.querySelector('.stats-charts').append(section);
    return { chart, section, plot: createChart(section.querySelector('.stats-plot')) };
  });
  element.querySelector('.stats-close').onclick = () => toggle(false);
  if (button) button.onclick = () => toggle();

  let history = createHistory();
  let timer = 0;
  let sampling = false;

  async function sample() {
    const pc = getPc();
    if (!pc || sampling) return;
    sampling = true;
    try {
      const report = await pc.getStats();
      if (pc !== getPc()) return;
      history = addReading(history, readReport(report, nameOfMid));
      onSample(history);
      if (!element.hidden) await draw();
    } catch {
      // A connection closing mid-call of getStats: the next tick reads the new one.
    } finally {
      sampling = false;
    }
  }

  async function draw() {
    pathText.textContent = describePair(history.pair);
    for (const slot of slots) {
      const { labels, data } = chartData(history, slot.chart);
      slot.section.classList.toggle('empty', labels.length === 0);
      await slot.plot.update(labels, data);
    }
  }

  async function toggle(open = element.hidden) {
    element.hidden = !open;
    button?.setAttribute('aria-pressed', String(open));
    if (!open) return;
    await loadCharts();
    await draw();
  }

  hooks.stats = {
    charts: () => slots.map(({ chart }) => {
      const { labels, data } = chartData(history, chart);
      return { id: chart.id, labels, points: data[0].length };
    }),
  };

  return {
    element,
    toggle,
    start() {
      clearInterval(timer);
      history = createHistory();
      timer = setInterval(sample, SAMPLE_MS);
    },
    stop() {
      clearInterval(timer);
      timer = 0;
      history = createHistory();
      for (const slot of slots) slot.plot.destroy();
      pathText.textContent = describePair(null);
    },
  };
}
