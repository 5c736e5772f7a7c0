// Sessions: who is connected to what, from where, right now — polled every
// 1.5 s from GET /api/v1/sessions — and "Terminate" with a reason, answered
// by the receipt of the edges.

import { h, cell, replace, pill, loading, empty, alertBox, field, debounce } from '../dom.js';
import { api } from '../api.js';
import { when, absolute, plural } from '../format.js';
import { actionDialog, receiptView } from '../dialog.js';

const POLL_MS = 1500;
const LIMIT = 200;
const filters = { email: '', route: '', state: 'all' };

/** Asks for a reason, terminates the session and shows the receipt. */
export function terminateSession(session) {
  return actionDialog({
    title: 'Terminate session',
    lead: `${session.email} on ${session.route}. Every edge drops it and closes its live connections; the user has to sign in again.`,
    confirmLabel: 'Terminate session',
    placeholder: 'e.g. stolen laptop, reported by the user',
    run: ({ reason }) => api('POST', `/sessions/${encodeURIComponent(session.id)}/terminate`, { query: { wait: true }, json: { reason } }),
    done: (answer) => receiptView('Session terminated', answer.receipt, `${answer.session.email} · ${answer.session.route}`),
  });
}

function stateCell(s) {
  if (s.state === 'active' && s.locked) {
    // The user is locked: every edge denies the session until the lock lifts.
    return [pill('Locked', 'bad'),
      h('span', { class: 'cell-sub nowrap', 'data-test': 'locked-until', title: s.locked_until || '' },
        s.locked_until ? `until ${absolute(s.locked_until)}` : 'until unlocked')];
  }
  if (s.state === 'active') return pill('Active', 'ok');
  return [pill('Ended', ''),
    s.end_reason ? h('span', { class: 'end-reason', 'data-test': 'end-reason' }, s.end_reason) : null,
    s.ended_at ? h('span', { class: 'cell-sub' }, when(s.ended_at)) : null];
}

function sourceCell(s) {
  const [first, ...rest] = s.source_addresses;
  return [h('div', { class: 'mono' }, first || '—'),
    rest.length ? h('div', { class: 'cell-sub nowrap', title: rest.join(', ') }, `+ ${rest.length} more`) : null];
}

/** The session table (cards on narrow screens). */
export function sessionTable(sessions, { onTerminate, onUser, fresh = new Set(), showUser = true }) {
  const rows = sessions.map((s) => h('tr', { class: `${s.state === 'active' ? '' : 'ended'} ${fresh.has(s.id) ? 'flash' : ''}`.trim(), dataset: { session: s.id } },
    showUser ? cell('User', {},
      h('a', { class: 'cell-main', href: `#/user/${encodeURIComponent(s.email)}`, onclick: onUser ? (e) => { e.preventDefault(); onUser(s.email); } : undefined }, s.email),
      h('div', { class: 'cell-sub' }, s.subject),
      s.groups.length ? h('div', { class: 'tags' }, s.groups.map((g) => h('span', { class: 'tag' }, g))) : null) : null,
    cell('Route', {}, h('div', { class: 'cell-main' }, s.route),
      s.edges.length ? h('div', { class: 'cell-sub nowrap', title: 'served by' }, `via ${s.edges.join(', ')}`) : null),
    cell('Source', {}, sourceCell(s)),
    cell('User agent', { class: 'ua-cell' }, h('div', { class: 'ua', title: s.user_agent, 'data-test': 'user-agent' }, s.user_agent || '—')),
    cell('Live', { class: 'num' }, s.live_connections > 0 ? pill(String(s.live_connections), 'accent', 'plain') : h('span', { class: 'cell-sub' }, '0')),
    cell('Started', {}, when(s.created_at)),
    cell('Last seen', {}, when(s.last_seen_at)),
    cell('State', { 'data-test': 'state' }, stateCell(s)),
    h('td', { class: 'actions' }, s.state === 'active'
      ? h('button', { type: 'button', class: 'button small danger-outline', 'data-test': 'terminate', onclick: () => onTerminate(s) }, 'Terminate')
      : null)));
  return h('table', { class: 'responsive', 'data-test': 'sessions' },
    h('thead', {}, h('tr', {},
      showUser ? h('th', {}, 'User') : null, h('th', {}, 'Route'), h('th', {}, 'Source'), h('th', {}, 'User agent'),
      h('th', { class: 'num' }, 'Live'), h('th', {}, 'Started'), h('th', {}, 'Last seen'),
      h('th', {}, 'State'), h('th', {}, h('span', { class: 'visually-hidden' }, 'Actions')))),
    h('tbody', {}, rows));
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

export function renderSessions(main, { go }) {
  const status = h('span', { class: 'sub' });
  const stats = h('div', { class: 'stats' });
  const region = h('div', { class: 'table-wrap' }, loading('Loading sessions…'));
  const problem = h('div');
  const email = h('input', { type: 'search', name: 'email', placeholder: 'ada@corp.example', value: filters.email });
  const route = h('input', { type: 'search', name: 'route', placeholder: 'any route', value: filters.route });
  const states = h('div', { class: 'segmented', role: 'group', 'aria-label': 'State' },
    [['all', 'All'], ['active', 'Active'], ['ended', 'Ended']].map(([value, label]) =>
      h('button', { type: 'button', class: filters.state === value ? 'on' : '', dataset: { state: value }, onclick: () => {
        filters.state = value;
        for (const b of states.children) b.classList.toggle('on', b.dataset.state === value);
        refresh(true);
      } }, label)));
  const onFilter = debounce(() => {
    filters.email = email.value.trim();
    filters.route = route.value.trim();
    refresh(true);
  }, 300);
  email.addEventListener('input', onFilter);
  route.addEventListener('input', onFilter);

  replace(main,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Sessions'), h('div', { class: 'sub' }, pill('Live', 'ok', 'live'), status))),
    stats,
    problem,
    h('section', { class: 'card' },
      h('div', { class: 'toolbar' },
        h('div', { class: 'grow' }, field('User', email)),
        h('div', { class: 'grow' }, field('Route', route)),
        field('State', states)),
      region));

  const seen = new Set();
  let first = true;
  let busy = false;
  let lastKey = '';
  let stopped = false;

  async function refresh(force = false) {
    if (busy || stopped) return;
    busy = true;
    try {
      const state = filters.state === 'all' ? undefined : filters.state;
      const page = await api('GET', '/sessions', { query: { email: filters.email, route: filters.route, state, limit: LIMIT } });
      if (stopped) return;
      const sessions = page.sessions;
      const key = JSON.stringify(sessions);
      status.textContent = `updated ${absolute(new Date().toISOString())} · every ${POLL_MS / 1000} s`;
      replace(problem);
      if (key === lastKey && !force) return;
      lastKey = key;
      const fresh = new Set(first ? [] : sessions.filter((s) => !seen.has(s.id)).map((s) => s.id));
      for (const s of sessions) seen.add(s.id);
      first = false;
      const active = sessions.filter((s) => s.state === 'active');
      const more = page.next_cursor ? '+' : '';
      replace(stats,
        stat('Active sessions', `${active.length}${more}`),
        stat('Users signed in', String(new Set(active.map((s) => s.email)).size)),
        stat('Live connections', String(active.reduce((n, s) => n + s.live_connections, 0))),
        stat('Ended (listed)', String(sessions.length - active.length)));
      if (sessions.length === 0) {
        const filtered = filters.email || filters.route || filters.state !== 'all';
        replace(region, empty(filtered ? 'No session matches these filters' : 'No sessions yet',
          filtered ? 'Clear a filter to see more.' : 'Sessions appear here the moment someone signs in through an edge.'));
        return;
      }
      replace(region, sessionTable(sessions, {
        fresh,
        onUser: (address) => go('user', address),
        onTerminate: async (s) => {
          await terminateSession(s);
          refresh(true);
        },
      }));
    } catch (error) {
      replace(problem, alertBox(`Could not load sessions: ${error.message}`));
      status.textContent = 'reconnecting…';
    } finally {
      busy = false;
    }
  }

  refresh(true);
  const timer = setInterval(refresh, POLL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
