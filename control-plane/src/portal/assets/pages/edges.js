// Edges: every enrolled edge, its health, the change it has applied, how far
// behind it is and its live connections, refreshed every two seconds; a
// one-time join token for a new edge; and "Revoke", which cuts an edge off
// at once (its calls are refused, its stream is dropped, its id never
// enrolls again).

import { h, cell, replace, pill, loading, empty, alertBox, icon } from '../dom.js';
import { api } from '../api.js';
import { when } from '../format.js';
import { actionDialog } from '../dialog.js';

const POLL_MS = 2000;

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

function health(e) {
  if (e.state === 'revoked') return [pill('Revoked', 'bad'), e.revoke_reason ? h('div', { class: 'cell-sub', 'data-test': 'revoke-reason' }, e.revoke_reason) : null];
  if (e.state === 'connected') return pill('Connected', 'ok');
  if (e.state === 'enrolled') return pill('Enrolled', '');
  return pill('Stale', 'warn');
}

/** Asks for a reason and revokes the edge. */
function revokeEdge(edge) {
  return actionDialog({
    title: 'Revoke edge',
    lead: `${edge.name} (${edge.id}). Its calls to the control plane are refused and its stream is dropped at once, on every replica; it stops receiving changes and cannot log anyone in. Its id can never enroll again.`,
    confirmLabel: 'Revoke edge',
    placeholder: 'e.g. host compromised, decommissioned',
    run: ({ reason }) => api('POST', `/edges/${encodeURIComponent(edge.id)}/revoke`, { json: { reason } }),
    done: (answer) => [h('h2', {}, 'Edge revoked'), h('p', { class: 'lead' }, `${answer.id} was revoked `, when(answer.revoked_at), '.')],
  });
}

/** Creates a one-time join token and shows it once. */
function newJoinToken() {
  return actionDialog({
    title: 'New join token',
    lead: 'A one-time token a new edge enrolls with (valid for one hour). It is shown only once.',
    confirmLabel: 'Create token',
    danger: false,
    reasonRequired: false,
    reasonLabel: 'Edge name (optional)',
    placeholder: 'e.g. eu-west edge 3',
    run: ({ reason }) => api('POST', '/edges/join-tokens', { json: reason ? { name: reason } : {} }),
    done: (created) => [h('h2', {}, 'Join token'),
      h('p', { class: 'lead' }, 'Works once, until ', when(created.expires_at), '. Give it to the edge as join_token, with a credential_file to keep its key in.'),
      h('pre', { class: 'mono', 'data-test': 'join-token' }, created.token)],
  });
}

export function renderEdges(main) {
  const stats = h('div', { class: 'stats' });
  const region = h('div', { class: 'table-wrap' }, loading('Loading edges…'));
  const problem = h('div');
  let lastKey = '';
  const join = h('button', { type: 'button', class: 'button', 'data-test': 'new-join-token', onclick: async () => {
    await newJoinToken();
    lastKey = '';
    refresh();
  } }, icon('edges'), 'New join token');
  replace(main,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Edges'), h('div', { class: 'sub' }, pill('Live', 'ok', 'live'), 'every node enforcing the policy, and how current it is')), join),
    stats, problem,
    h('section', { class: 'card' }, region));
  let stopped = false;

  async function onRevoke(edge) {
    await revokeEdge(edge);
    lastKey = '';
    refresh();
  }

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
        stat('Connected edges', `${connected.length} / ${edges.filter((e) => e.state !== 'revoked').length}`),
        stat('In sync', String(connected.filter((e) => e.lag === 0).length)),
        stat('Live connections', String(connected.reduce((n, e) => n + e.live_connections, 0))),
        stat('Largest lag', String(Math.max(0, ...connected.map((e) => e.lag)))));
      if (edges.length === 0) {
        replace(region, empty('No edge has enrolled yet', 'Create a join token, then start an edge with it (`portcullis edge`).'));
        return;
      }
      replace(region, h('table', { class: 'responsive', 'data-test': 'edges' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Edge'), h('th', {}, 'Health'), h('th', { class: 'num' }, 'Applied change'), h('th', {}, 'Lag'), h('th', { class: 'num' }, 'Live connections'), h('th', {}, 'Last report'), h('th', {}, 'Enrolled'), h('th', {}, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, edges.map((e) => h('tr', { class: e.state === 'revoked' ? 'ended' : '', dataset: { edge: e.id } },
          cell('Edge', {}, h('div', { class: 'cell-main' }, e.name), e.name !== e.id ? h('div', { class: 'cell-sub' }, e.id) : null),
          cell('Health', { 'data-test': 'health' }, health(e)),
          cell('Applied', { class: 'num' }, `#${e.applied_seq}`),
          cell('Lag', {}, e.lag === 0 ? pill('in sync', 'ok', 'plain') : pill(`${e.lag} behind`, 'warn', 'plain')),
          cell('Live', { class: 'num' }, String(e.live_connections)),
          cell('Last report', {}, when(e.last_heartbeat_at)),
          cell('Enrolled', {}, when(e.enrolled_at), e.enrolled_by ? h('div', { class: 'cell-sub' }, e.enrolled_by) : null),
          h('td', { class: 'actions' }, e.enrolled_at && e.state !== 'revoked'
            ? h('button', { type: 'button', class: 'button small danger-outline', 'data-test': 'revoke', onclick: () => onRevoke(e) }, 'Revoke')
            : null))))));
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
