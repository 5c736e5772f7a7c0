// Audit log: who did what, when, why and from where — filterable by user,
// actor, action, route, edge, target, time and the reference a denied user
// quotes, newest first, paged with "Load more". An entry an edge summed from
// a burst shows its count.

import { h, cell, replace, loading, empty, alertBox, field, icon, debounce } from '../dom.js';
import { api } from '../api.js';
import { when, fromLocalInput } from '../format.js';

const ACTIONS = [
  'session.create', 'session.terminate', 'session.replace', 'session.address_changed', 'access.denied',
  'user.terminate', 'user.lock', 'user.unlock', 'policy.apply', 'admin_token.create', 'admin_token.revoke',
  'service_token.create', 'service_token.revoke', 'signing_key.rotate', 'portal.login', 'portal.login_refused', 'portal.logout',
  'signal.applied', 'signal.received', 'response.fired', 'response.dry_run', 'user.groups_overridden',
  'connection.closed', 'flow.open', 'flow.close',
];
const filters = { user: '', actor: '', action: '', route: '', edge: '', target: '', since: '', reference: '' };

// A denial reference has 12 characters (dashes and spaces are the reader's):
// a shorter one is still being typed, so it filters nothing yet.
const referenceComplete = (text) => text.replace(/[\s-]/g, '').length === 12;

function actionKind(action) {
  if (/terminate$|\.lock$|revoke$|refused$|denied$|^connection\.closed$/.test(action)) return 'bad';
  if (/^policy|^signing_key|^signal\.|^response\.|groups_overridden$/.test(action)) return 'accent';
  return '';
}

function rows(entries) {
  return entries.map((e) => h('tr', { dataset: { entry: e.id } },
    cell('When', {}, when(e.at)),
    cell('Actor', {}, h('span', { class: 'cell-main' }, e.actor)),
    cell('Action', {}, h('span', { class: `pill plain ${actionKind(e.action)}` }, e.action),
      e.count > 1 ? h('span', { class: 'cell-sub', 'data-test': 'count', title: 'occurrences summed by the edge' }, ` ×${e.count}`) : null),
    cell('Target', {}, h('span', { class: 'mono target' }, e.target)),
    cell('Reason', {}, e.reason ? h('span', { class: 'reason' }, e.reason) : h('span', { class: 'cell-sub' }, '—')),
    cell('From', {}, h('span', { class: 'mono' }, e.source_address || '—')),
    cell('Change', { class: 'num' }, e.seq === null ? h('span', { class: 'cell-sub' }, '—') : `#${e.seq}`)));
}

export function renderAudit(main) {
  const user = h('input', { type: 'search', name: 'user', placeholder: 'ada@corp.example or IdP subject', value: filters.user });
  const route = h('input', { type: 'search', name: 'route', placeholder: 'route name', value: filters.route });
  const edge = h('input', { type: 'search', name: 'edge', placeholder: 'edge id', value: filters.edge });
  const actor = h('input', { type: 'search', name: 'actor', placeholder: 'portal:alice@corp.example', value: filters.actor });
  const action = h('select', { name: 'action' }, h('option', { value: '' }, 'Any action'), ACTIONS.map((a) => h('option', { value: a, selected: a === filters.action }, a)));
  action.value = filters.action;
  const target = h('input', { type: 'search', name: 'target', placeholder: 'email:ada@… or session:…', value: filters.target });
  const since = h('input', { type: 'datetime-local', name: 'since', value: filters.since });
  const reference = h('input', { type: 'search', name: 'reference', placeholder: 'KJV3-00X3-ZMX7', value: filters.reference,
    title: 'The reference on the page a denied user saw' });
  const region = h('div', { class: 'table-wrap' }, loading('Loading the audit log…'));
  const more = h('button', { type: 'button', class: 'button', hidden: true }, 'Load more');
  const refresh = h('button', { type: 'button', class: 'button', onclick: () => load(false) }, icon('refresh'), 'Refresh');
  replace(main,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Audit log'), h('div', { class: 'sub' }, 'Who did what, when, why and from where.')),
      h('div', { class: 'actions' }, refresh)),
    h('section', { class: 'card' },
      h('div', { class: 'toolbar filters' },
        field('User', user), field('Actor', actor), field('Action', action), field('Route', route), field('Edge', edge),
        field('Target contains', target), field('Since', since), field('Reference', reference)),
      region,
      h('div', { class: 'editor-status' }, h('span', { class: 'hint', 'data-test': 'audit-count' }), more)));

  let cursor = null;
  let tbody = null;
  let shown = 0;
  let serial = 0;

  async function load(append) {
    const mine = ++serial;
    if (!append) replace(region, loading('Loading the audit log…'));
    try {
      const page = await api('GET', '/audit', { query: {
        user: filters.user, actor: filters.actor, action: filters.action, route: filters.route, edge: filters.edge,
        target: filters.target, reference: referenceComplete(filters.reference) ? filters.reference : undefined,
        since: fromLocalInput(filters.since), cursor: append ? cursor : undefined, limit: 100,
      } });
      if (mine !== serial) return;
      cursor = page.next_cursor;
      more.hidden = cursor === null || cursor === undefined;
      if (!append) {
        shown = 0;
        if (page.entries.length === 0) {
          replace(region, empty('Nothing recorded', 'No entry matches these filters.'));
          main.querySelector('[data-test=audit-count]').textContent = '';
          return;
        }
        tbody = h('tbody', {});
        replace(region, h('table', { class: 'responsive', 'data-test': 'audit' },
          h('thead', {}, h('tr', {}, ['When', 'Actor', 'Action', 'Target', 'Reason', 'From'].map((t) => h('th', {}, t)), h('th', { class: 'num' }, 'Change'))),
          tbody));
      }
      tbody.append(...rows(page.entries));
      shown += page.entries.length;
      main.querySelector('[data-test=audit-count]').textContent = `${shown} entr${shown === 1 ? 'y' : 'ies'}${more.hidden ? '' : ' so far'}`;
    } catch (error) {
      replace(region, alertBox(error.message));
    }
  }

  const onFilter = debounce(() => {
    Object.assign(filters, {
      user: user.value.trim(), actor: actor.value.trim(), action: action.value, route: route.value.trim(),
      edge: edge.value.trim(), target: target.value.trim(), since: since.value, reference: reference.value.trim(),
    });
    load(false);
  }, 300);
  for (const control of [user, actor, route, edge, target, reference]) control.addEventListener('input', onFilter);
  for (const control of [action, since]) control.addEventListener('change', onFilter);
  more.addEventListener('click', () => load(true));
  load(false);
  return null;
}
