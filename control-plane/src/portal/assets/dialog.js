// Modal dialogs (<dialog>): an action that asks for a reason, runs, and then
// shows what happened — for terminations, the receipt from the edges.

import { h, append, replace, alertBox, field, icon } from './dom.js';
import { elapsed, plural } from './format.js';
import { receiptLines } from './deliveries.js';

/**
 * Asks for a reason (and optionally an expiry or a checkbox), runs
 * `run({ reason, until, checked })`
 * and shows `done(result)` in the same dialog. Resolves with the result, or
 * null when cancelled.
 */
export function actionDialog({ title, lead, confirmLabel, danger = true, reasonRequired = true, reasonLabel = 'Reason',
  placeholder = '', withUntil = false, checkbox = null, run, done }) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { 'aria-label': title });
    const reason = h('textarea', { name: 'reason', rows: 3, maxlength: 500, placeholder, required: reasonRequired });
    const until = withUntil ? h('input', { type: 'datetime-local', name: 'until' }) : null;
    // An optional yes/no the action takes (unchecked by default), e.g. keep sessions at unlock.
    const check = checkbox ? h('input', { type: 'checkbox', name: checkbox.name }) : null;
    const problem = h('div');
    const confirm = h('button', { type: 'submit', class: `button ${danger ? 'danger' : 'primary'}` }, confirmLabel);
    const cancel = h('button', { type: 'button', class: 'button', onclick: () => dialog.close() }, 'Cancel');
    let result = null;
    const form = h('form', { method: 'dialog', onsubmit: async (event) => {
      event.preventDefault();
      if (reasonRequired && !reason.value.trim()) {
        replace(problem, alertBox('Give a reason: it goes to the audit log.'));
        reason.focus();
        return;
      }
      confirm.disabled = true;
      cancel.disabled = true;
      replace(confirm, h('span', { class: 'spinner small' }), 'Working…');
      try {
        result = await run({ reason: reason.value.trim(), until: until && until.value ? until.value : undefined,
          checked: check ? check.checked : false });
        replace(dialog, h('div', { class: 'dialog-body', 'data-test': 'dialog-done' }, done(result)),
          h('div', { class: 'dialog-foot' },
            h('button', { type: 'button', class: 'button primary', 'data-test': 'dialog-close', onclick: () => dialog.close() }, 'Done')));
        dialog.querySelector('[data-test=dialog-close]').focus();
      } catch (error) {
        replace(problem, alertBox(error.message));
        replace(confirm, confirmLabel);
        confirm.disabled = false;
        cancel.disabled = false;
      }
    } },
    h('div', { class: 'dialog-body' },
      h('h2', {}, title),
      lead ? h('p', { class: 'lead' }, lead) : null,
      problem,
      field(reasonLabel, reason, reasonRequired ? 'Recorded in the audit log with your name and address.' : ''),
      until ? field('Lock until (optional)', until, 'Empty: until someone unlocks.') : null,
      check ? h('label', { class: 'check' }, check, h('span', {}, checkbox.label),
        checkbox.hint ? h('span', { class: 'hint' }, checkbox.hint) : null) : null),
    h('div', { class: 'dialog-foot' }, cancel, confirm));
    append(dialog, [form]);
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    reason.focus();
  });
}

/** A simple confirmation with a message field (policy apply, rollback). */
export function confirmDialog({ title, lead, confirmLabel, messageLabel = 'Message', placeholder = '', extra = null, run, done }) {
  return actionDialog({
    title, lead, confirmLabel, danger: false, reasonRequired: false, reasonLabel: messageLabel, placeholder,
    run, done: done || (() => [h('h2', {}, 'Done')]),
  }).then((result) => result);
}

/** The receipt of a change: edges applied, connections closed, elapsed. */
export function receiptView(title, receipt, detail = null) {
  const applied = `${receipt.edges_applied} / ${receipt.edges_total}`;
  let note;
  if (receipt.seq === null || receipt.seq === undefined) note = 'Nothing changed: it had already ended.';
  else if (receipt.edges_total === 0) note = `Committed as change #${receipt.seq}. No edge is connected right now; edges apply it as soon as they connect.`;
  else if (receipt.complete) note = `Committed as change #${receipt.seq} and applied by every connected edge.`;
  else note = `Committed as change #${receipt.seq}. Not every edge confirmed within the wait; they apply it when they catch up.`;
  return [
    h('div', { class: 'done-mark' }, icon('check')),
    h('h2', {}, title),
    detail ? h('p', { class: 'lead' }, detail) : null,
    h('div', { class: 'receipt', 'data-test': 'receipt' },
      h('div', {}, h('div', { class: 'label' }, 'Edges applied'), h('div', { class: 'value', 'data-test': 'edges-applied' }, applied)),
      h('div', {}, h('div', { class: 'label' }, 'Connections closed'), h('div', { class: 'value', 'data-test': 'connections-closed' }, String(receipt.connections_closed))),
      h('div', {}, h('div', { class: 'label' }, 'Elapsed'), h('div', { class: 'value', 'data-test': 'elapsed' }, elapsed(receipt.elapsed_ms)))),
    h('p', { class: 'receipt-note' }, note),
    receipt.relying_parties && receipt.relying_parties.length ? h('h3', {}, 'Relying parties') : null,
    receiptLines(receipt.relying_parties),
  ];
}

/** "2 sessions ended" for user actions. */
export function sessionsEnded(n) {
  return `${plural(n, 'session')} ended.`;
}
