// User: "give me an email, end everything". All sessions of one email,
// terminate all (every session, every token issued before now, on every
// edge), lock and unlock with a reason and an optional expiry, and what
// each relying party answered to the sign-outs those sent it (live, with
// Retry for a failed one).

import { h, cell, replace, pill, loading, empty, alertBox, field, icon } from '../dom.js';
import { api } from '../api.js';
import { when, absolute, relative, fromLocalInput, plural } from '../format.js';
import { actionDialog, receiptView, sessionsEnded } from '../dialog.js';
import { sessionTable, terminateSession } from './sessions.js';
import { deliveryTable } from '../deliveries.js';

const POLL_MS = 1500;

function auditTable(entries) {
  return h('table', { class: 'responsive' },
    h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'Action'), h('th', {}, 'Actor'), h('th', {}, 'Reason'))),
    h('tbody', {}, entries.map((e) => h('tr', {},
      cell('When', {}, when(e.at)),
      cell('Action', {}, h('code', {}, e.action)),
      cell('Actor', {}, h('div', {}, e.actor), h('div', { class: 'cell-sub' }, e.source_address)),
      cell('Reason', {}, e.reason || '—')))));
}

export function renderUser(main, { arg, go }) {
  const email = h('input', { type: 'email', name: 'email', placeholder: 'ada@corp.example', value: arg, required: true, autocomplete: 'off' });
  const form = h('form', { class: 'toolbar', 'data-test': 'user-form', onsubmit: (event) => {
    event.preventDefault();
    const address = email.value.trim().toLowerCase();
    if (address) go('user', address);
  } },
  h('div', { class: 'grow' }, field('Email address', email)),
  h('button', { type: 'submit', class: 'button primary' }, icon('search'), 'Look up'));

  replace(main,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'User'), h('div', { class: 'sub' }, 'Every session of one person, and the controls to end them.'))),
    h('section', { class: 'card' }, form));

  if (!arg) {
    main.append(h('section', { class: 'card' }, empty('Type an email address', 'See all of a user’s sessions, end them everywhere at once, or lock the account.')));
    email.focus();
    return null;
  }

  const address = arg.toLowerCase();
  const lockState = h('span', {}, pill('Checking lock…'));
  const problem = h('div');
  const sessionsRegion = h('div', { class: 'table-wrap' }, loading('Loading sessions…'));
  const auditRegion = h('div', { class: 'table-wrap', 'data-test': 'history' }, loading());
  const deliveriesRegion = h('div', { class: 'table-wrap' }, loading());
  const count = h('span', { class: 'hint' });
  let locked = false;

  const terminateAll = h('button', { type: 'button', class: 'button danger', 'data-test': 'terminate-all', onclick: async () => {
    await actionDialog({
      title: 'Terminate all sessions',
      lead: `Ends every session of ${address} and invalidates every token issued to them before now, on every edge. Their live connections close.`,
      confirmLabel: 'Terminate all sessions',
      placeholder: 'e.g. offboarding, compromised account',
      run: ({ reason }) => api('POST', '/users/terminate', { query: { wait: true }, json: { email: address, reason } }),
      done: (answer) => receiptView('All sessions terminated', answer.receipt, sessionsEnded(answer.sessions_ended)),
    });
    refresh(true);
  } }, icon('stop'), 'Terminate all sessions');
  const lockButton = h('button', { type: 'button', class: 'button', 'data-test': 'lock', onclick: async () => {
    if (locked) {
      await actionDialog({
        title: 'Unlock user',
        lead: `${address} can sign in again. Their sessions end too (as Terminate all): whoever held one before the lock has to sign in again.`,
        confirmLabel: 'Unlock', danger: false, reasonRequired: false, reasonLabel: 'Reason (optional)',
        checkbox: { name: 'keep_sessions', label: 'Keep their sessions', hint: 'The sessions the lock suspended come back as they were.' },
        run: ({ reason, checked }) => api('POST', '/users/unlock',
          { query: { wait: true }, json: { email: address, reason: reason || undefined, keep_sessions: checked || undefined } }),
        done: (answer) => receiptView('User unlocked', answer.receipt, sessionsEnded(answer.sessions_ended)),
      });
    } else {
      await actionDialog({
        title: 'Lock user',
        lead: `${address} is denied everywhere and their live connections close, until unlocked.`,
        confirmLabel: 'Lock user', withUntil: true,
        placeholder: 'e.g. under investigation',
        run: ({ reason, until }) => api('POST', '/users/lock', { query: { wait: true }, json: { email: address, reason, until: fromLocalInput(until) } }),
        done: (answer) => receiptView('User locked', answer.receipt),
      });
    }
    refresh(true);
  } });

  main.append(
    problem,
    h('section', { class: 'card' },
      h('div', { class: 'user-head' },
        h('div', { class: 'user-id' }, h('div', { class: 'avatar', 'aria-hidden': 'true' }, address.slice(0, 1)),
          h('div', {}, h('div', { class: 'name', 'data-test': 'user-email' }, address), h('div', { class: 'meta' }, lockState, count))),
        h('div', { class: 'actions' }, lockButton, terminateAll))),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Sessions'), h('span', { class: 'hint' }, 'newest first, live')), sessionsRegion),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Relying parties'),
      h('span', { class: 'hint' }, 'sign-outs sent to the SSO, Slack, webhooks…, live')), deliveriesRegion),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'History'), h('span', { class: 'hint' }, 'logins, terminations, locks and sign-outs, newest first')), auditRegion));

  let busy = false;
  let stopped = false;
  let lastKey = '';

  async function refresh(force = false) {
    if (busy || stopped) return;
    busy = true;
    try {
      const [page, lock, audit, deliveries] = await Promise.all([
        api('GET', '/sessions', { query: { email: address, limit: 200 } }),
        api('GET', '/users/lock', { query: { email: address } }),
        api('GET', '/audit', { query: { user: address, limit: 50 } }),
        api('GET', '/deliveries', { query: { email: address, limit: 50 } }),
      ]);
      if (stopped) return;
      replace(problem);
      const key = JSON.stringify([page, lock, audit, deliveries]);
      if (key === lastKey && !force) return;
      lastKey = key;
      locked = lock.locked;
      replace(lockState, locked
        ? [pill(`Locked: ${lock.reason || 'no reason given'}`, 'bad'),
          h('span', { class: 'hint', 'data-test': 'lock-until', title: lock.until || '' },
            lock.until ? `until ${absolute(lock.until)} (${relative(lock.until)})` : 'until unlocked')]
        : pill('Not locked', 'ok'));
      replace(lockButton, icon(locked ? 'unlock' : 'lock'), locked ? 'Unlock' : 'Lock');
      const active = page.sessions.filter((s) => s.state === 'active').length;
      const suspended = page.sessions.filter((s) => s.locked).length;
      count.textContent = `${plural(active, 'active session')}${suspended ? ` (${suspended} locked)` : ''} · ${page.sessions.length} in all`;
      terminateAll.disabled = false;
      replace(sessionsRegion, page.sessions.length
        ? sessionTable(page.sessions, { showUser: false, onTerminate: async (s) => { await terminateSession(s); refresh(true); } })
        : empty('No sessions', `${address} has not signed in through an edge.`));
      replace(deliveriesRegion, deliveries.length
        ? deliveryTable(deliveries, () => refresh(true))
        : empty('Nothing sent', 'No relying party has been asked to sign this user out (see README: Relying parties).'));
      replace(auditRegion, audit.entries.length ? auditTable(audit.entries) : empty('Nothing recorded', 'Nothing has happened to this user yet.'));
    } catch (error) {
      replace(problem, alertBox(error.message));
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
