// The statistics panel of both call pages: charts of the page's own connection over the last
// minutes (bit rate, loss, round trip, jitter, frame rate, resolution per stream) and the path
// in use. lib/stats.js turns getStats() into series; this file only samples and draws. The
// charts are uPlot (npm `uplot`, served by `signal` at /vendor/uPlot.esm.js), loaded the first
// time the panel opens; sampling runs during the whole call, so opening the panel shows the
// minutes before.
//
// Test hooks: [data-testid] stats-panel, stats-path, stats-chart (data-chart = its id);
// window.__rtc.stats.charts() → [{id, labels, points}].

import { addReading, chartData, CHARTS, createHistory, describePair, latest, readReport } from './stats.js';

const SAMPLE_MS = 1000;
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const COLORS = ['#7aa2ff', '#34d399', '#fbbf24', '#f472b6', '#a78bfa', '#22d3ee', '#fb923c', '#f87171'];

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
  const charts = element.querySelector('.stats-charts');
  const pathText = element.querySelector('[data-testid="stats-path"]');
  const slots = new Map();
  for (const chart of CHARTS) {
    const section = document.createElement('section');
    section.className = 'stats-chart';
    section.dataset.testid = 'stats-chart';
    section.dataset.chart = chart.id;
    section.innerHTML = `<h4>${chart.title} <small>${chart.unit}</small></h4><div class="stats-plot"></div><p class="stats-empty">No data yet.</p>`;
    charts.append(section);
    slots.set(chart.id, { chart, section, plot: null, labels: '' });
  }
  element.querySelector('.stats-close').onclick = () => toggle(false);
  if (button) button.onclick = () => toggle();

  let history = createHistory();
  let timer = 0;
  let uPlot = null;
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
      if (!element.hidden) draw();
    } catch {
      // A connection closing mid-call of getStats: the next tick reads the new one.
    } finally {
      sampling = false;
    }
  }

  function draw() {
    pathText.textContent = describePair(history.pair);
    if (!uPlot) return;
    for (const slot of slots.values()) {
      const { labels, data } = chartData(history, slot.chart);
      slot.section.classList.toggle('empty', labels.length === 0);
      const key = labels.join('\n');
      if (slot.plot && slot.labels === key) {
        slot.plot.setData(data);
        continue;
      }
      slot.plot?.destroy();
      slot.plot = labels.length ? new uPlot(plotOptions(slot, labels), data, slot.section.querySelector('.stats-plot')) : null;
      slot.labels = key;
    }
  }

  function plotOptions(slot, labels) {
    const width = Math.max(240, slot.section.clientWidth || 360);
    const axis = { stroke: '#8c96a8', grid: { stroke: 'rgba(255,255,255,.06)' }, ticks: { stroke: 'rgba(255,255,255,.1)' }, font: '11px system-ui, sans-serif' };
    const format = (v) => (v === null || v === undefined ? '—' : v >= 100 ? Math.round(v) : v.toFixed(1));
    return {
      width,
      height: 120,
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      // Clock time, one line (uPlot's default adds the date under it).
      axes: [{ ...axis, space: 70, values: (u, ticks) => ticks.map(clock) }, { ...axis, size: 44 }],
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          value: (u, v, si) => format(v ?? latest(u.data[si])),
        })),
      ],
    };
  }

  async function toggle(open = element.hidden) {
    element.hidden = !open;
    button?.setAttribute('aria-pressed', String(open));
    if (!open) return;
    if (!uPlot) uPlot = (await import('/vendor/uPlot.esm.js')).default;
    draw();
  }

  hooks.stats = {
    charts: () => [...slots.values()].map(({ chart }) => {
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
      for (const slot of slots.values()) {
        slot.plot?.destroy();
        slot.plot = null;
        slot.labels = '';
      }
      pathText.textContent = describePair(null);
    },
  };
}
