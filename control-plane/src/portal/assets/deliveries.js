// Relying parties: what each one answered to the sign-outs a termination
// sent it (GET /api/v1/deliveries), shown in receipts and on the user page,
// with a Retry button for a failed or dead delivery.

import { h, cell, pill, icon } from './dom.js';
import { api } from './api.js';
import { when } from './format.js';

const KINDS = { applied: 'ok', retrying: 'warn', pending: '', failed: 'bad', dead: 'bad' };
const WORDS = { applied: 'Applied', retrying: 'Retrying', pending: 'Sending', failed: 'Failed', dead: 'Gave up' };

/** The state of one delivery as a pill. */
export function deliveryState(d) {
  return pill(WORDS[d.state] || d.state, KINDS[d.state] ?? '', d.state === 'pending' || d.state === 'retrying' ? 'live' : '');
}

/** What the relying party said, and when it is tried again. */
function said(d) {
  const text = d.state === 'applied' ? (d.detail || '') : (d.error || '');
  const next = d.state === 'retrying' && d.next_attempt_at ? `next attempt ${when(d.next_attempt_at)}` : '';
  return [text ? h('div', { class: 'said' }, text) : null, next ? h('div', { class: 'cell-sub' }, next) : null];
}

/** The receipt's lines: one per relying party. */
export function receiptLines(lines) {
  if (!lines || !lines.length) return null;
  return h('ul', { class: 'rp-lines', 'data-test': 'receipt-relying-parties' }, lines.map((d) => h('li', {},
    h('strong', {}, d.relying_party), ' ', deliveryState(d), ' ', ...said(d))));
}

/** The user page's table; `onRetried` refreshes the page. */
export function deliveryTable(deliveries, onRetried) {
  return h('table', { class: 'responsive', 'data-test': 'deliveries' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Relying party'), h('th', {}, 'Action'), h('th', {}, 'State'),
      h('th', {}, 'Attempts'), h('th', {}, 'Answer'), h('th', {}, 'Sent'), h('th', {}, ''))),
    h('tbody', {}, deliveries.map((d) => h('tr', { 'data-test': 'delivery', 'data-state': d.state },
      cell('Relying party', {}, h('strong', {}, d.relying_party)),
      cell('Action', {}, h('code', {}, d.action || '—')),
      cell('State', {}, deliveryState(d)),
      cell('Attempts', {}, String(d.attempts)),
      cell('Answer', {}, ...said(d)),
      cell('Sent', {}, when(d.created_at)),
      cell('', {}, d.state === 'failed' || d.state === 'dead'
        ? h('button', { type: 'button', class: 'button small', 'data-test': 'retry-delivery', onclick: async (event) => {
          event.currentTarget.disabled = true;
          await api('POST', `/deliveries/${encodeURIComponent(d.job)}/retry`);
          onRetried();
        } }, icon('refresh'), 'Retry')
        : null)))));
}
