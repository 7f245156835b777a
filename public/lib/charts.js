// Time-series charts for the pages (the statistics panel, the operator page), one look for
// all: uPlot (npm `uplot`, served by `signal` at /vendor/uPlot.esm.js, with its CSS at
// /vendor/uPlot.min.css), loaded on first use so pages that never chart never fetch it.

/** Series colours, saturated so that tests tell a drawn line from the grey axes and grid. */
export const COLORS = ['#7aa2ff', '#34d399', '#fbbf24', '#f472b6', '#a78bfa', '#22d3ee', '#fb923c', '#f87171'];

let library = null;

/** uPlot's constructor, fetched once. */
export function loadCharts() {
  library ??= import('/vendor/uPlot.esm.js').then((module) => module.default);
  return library;
}

const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const format = (v) => (v === null || v === undefined ? '—' : Math.abs(v) >= 100 ? Math.round(v) : Number(v.toFixed(1)));

/** The last non-null value of a series. */
export function latest(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

/**
 * A chart in `container` that follows `update(labels, data)` (uPlot's data shape: times in
 * seconds, then one array per series); it is rebuilt when its series change, else only fed.
 * Call after loadCharts() resolved.
 */
export function createChart(container, { height = 120 } = {}) {
  let plot = null;
  let key = '';
  return {
    async update(labels, data) {
      const uPlot = await loadCharts();
      const next = labels.join('\n');
      if (plot && key === next) {
        plot.setData(data);
        return;
      }
      plot?.destroy();
      plot = labels.length ? new uPlot(options(container, labels, height), data, container) : null;
      key = next;
    },
    destroy() {
      plot?.destroy();
      plot = null;
      key = '';
    },
  };
}

function options(container, labels, height) {
  const axis = { stroke: '#8c96a8', grid: { stroke: 'rgba(255,255,255,.06)' }, ticks: { stroke: 'rgba(255,255,255,.1)' }, font: '11px system-ui, sans-serif' };
  return {
    width: Math.max(240, container.clientWidth || 360),
    height,
    cursor: { drag: { x: false, y: false } },
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    // Clock time on one line (uPlot's default adds the date under it).
    axes: [{ ...axis, space: 70, values: (u, ticks) => ticks.map(clock) }, { ...axis, size: 44 }],
    series: [
      {},
      ...labels.map((label, i) => ({
        label,
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        // Without the cursor on the chart, the legend shows the latest value.
        value: (u, v, si) => format(v ?? latest(u.data[si])),
      })),
    ],
  };
}

/**
 * A titled chart section, `<section data-testid="stats-chart" data-chart={id}>`, with a
 * `.stats-plot` for createChart() and a note shown while it has the class `empty`
 * (styles in tools.css).
 */
export function chartSection(id, title, unit) {
  const section = document.createElement('section');
  section.className = 'stats-chart';
  section.dataset.testid = 'stats-chart';
  section.dataset.chart = id;
  section.innerHTML = `<h4></h4><div class="stats-plot"></div><p class="stats-empty">No data yet.</p>`;
  section.querySelector('h4').append(title, Object.assign(document.createElement('small'), { textContent: unit }));
  section.classList.add('empty');
  return section;
}
