// Edges: health, the change they have applied, how far behind they are and
// their live connections, refreshed every two seconds.

import { h, cell, replace, pill, loading, empty, alertBox } from '../dom.js';
import { api } from '../api.js';
import { when } from '../format.js';

const POLL_MS = 2000;

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

export function renderEdges(main) {
  const stats = h('div', { class: 'stats' });
  const region = h('div', { class: 'table-wrap' }, loading('Loading edges…'));
  const problem = h('div');
  replace(main,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Edges'), h('div', { class: 'sub' }, pill('Live', 'ok', 'live'), 'every node enforcing the policy, and how current it is'))),
    stats, problem,
    h('section', { class: 'card' }, region));
  let stopped = false;
  let lastKey = '';

  async function refresh() {
    try {
      const edges = await api('GET', '/edges');
      if (stopped) return;
      replace(problem);
      const key = JSON.stringify(edges);
      if (key === lastKey) return;
      lastKey = key;
      const connected = edges.filter((e) => e.state === 'connected');
      replace(stats,
        stat('Connected edges', `${connected.length} / ${edges.length}`),
        stat('In sync', String(connected.filter((e) => e.lag === 0).length)),
        stat('Live connections', String(connected.reduce((n, e) => n + e.live_connections, 0))),
        stat('Largest lag', String(Math.max(0, ...connected.map((e) => e.lag)))));
      if (edges.length === 0) {
        replace(region, empty('No edge has connected yet', 'Start one with `portcullis edge`; it appears here once it has its first snapshot.'));
        return;
      }
      replace(region, h('table', { class: 'responsive', 'data-test': 'edges' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Edge'), h('th', {}, 'Health'), h('th', { class: 'num' }, 'Applied change'), h('th', {}, 'Lag'), h('th', { class: 'num' }, 'Live connections'), h('th', {}, 'Last report'))),
        h('tbody', {}, edges.map((e) => h('tr', { dataset: { edge: e.id } },
          cell('Edge', {}, h('div', { class: 'cell-main' }, e.name), e.name !== e.id ? h('div', { class: 'cell-sub' }, e.id) : null),
          cell('Health', {}, e.state === 'connected' ? pill('Connected', 'ok') : pill('Stale', 'warn')),
          cell('Applied', { class: 'num' }, `#${e.applied_seq}`),
          cell('Lag', {}, e.lag === 0 ? pill('in sync', 'ok', 'plain') : pill(`${e.lag} behind`, 'warn', 'plain')),
          cell('Live', { class: 'num' }, String(e.live_connections)),
          cell('Last report', {}, when(e.last_heartbeat_at)))))));
    } catch (error) {
      replace(problem, alertBox(`Could not load edges: ${error.message}`));
    }
  }
  refresh();
  const timer = setInterval(refresh, POLL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
