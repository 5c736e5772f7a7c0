// Policy: the document in force, an editor that validates as you type
// (problems at line:column), the diff against the version in force, apply,
// history and rollback, and "explain" — decided by the same evaluator the
// edges run (POST /api/v1/policy/explain).

import { h, cell, replace, pill, loading, empty, alertBox, field, icon, toast, debounce } from '../dom.js';
import { api, ApiError } from '../api.js';
import { when } from '../format.js';
import { actionDialog, receiptView } from '../dialog.js';
import { diffView, diffLines, diffStats } from '../diff.js';

let draft = null;
let tab = 'edit';

function versionLine(current) {
  if (!current) return loading();
  if (current.version === 0) return h('span', { class: 'version-line' }, pill('No policy yet', 'warn'), 'every request is denied until one is applied');
  return h('span', { class: 'version-line', 'data-test': 'version' }, pill(`Version ${current.version} in force`, 'ok'),
    `applied by ${current.author}`, when(current.created_at), current.message ? `“${current.message}”` : null);
}

/** Offset of line:column (from 1) in `text`. */
function offsetOf(text, line, column) {
  let offset = 0;
  for (let n = 1; n < line; n += 1) {
    const next = text.indexOf('\n', offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(text.length, offset + Math.max(0, column - 1));
}

function editorPane(state) {
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
  const textarea = h('textarea', { name: 'policy', spellcheck: 'false', wrap: 'off', 'aria-label': 'Policy document (YAML)', 'data-test': 'editor', autocapitalize: 'off' });
  let lines = 0;
  let marked = '';
  function paint(problemLines = new Set()) {
    const count = textarea.value.split('\n').length;
    const key = [...problemLines].join(',');
    if (count === lines && key === marked) return;
    lines = count;
    marked = key;
    replace(gutter, Array.from({ length: count }, (_, n) => h('div', { class: problemLines.has(n + 1) ? 'error' : '' }, String(n + 1))));
    gutter.scrollTop = textarea.scrollTop;
  }
  textarea.addEventListener('scroll', () => { gutter.scrollTop = textarea.scrollTop; });
  textarea.addEventListener('keydown', (event) => {
    if (event.key === 'Tab' && !event.shiftKey) {
      event.preventDefault();
      textarea.setRangeText('  ', textarea.selectionStart, textarea.selectionEnd, 'end');
      textarea.dispatchEvent(new Event('input'));
    }
  });
  function reveal(line, column) {
    const at = offsetOf(textarea.value, line, column);
    textarea.focus();
    textarea.setSelectionRange(at, at);
    textarea.scrollTop = Math.max(0, (line - 5) * 20);
  }
  state.reveal = reveal;
  return { el: h('div', { class: 'editor' }, gutter, textarea), textarea, paint, reveal };
}

function problemList(problems, reveal) {
  return h('ul', { class: 'problems', 'data-test': 'problems' }, problems.map((p) => h('li', {},
    h('button', { type: 'button', onclick: () => reveal(p.line, p.column) },
      h('span', { class: 'at' }, `line ${p.line}:${p.column}`), p.message))));
}

function renderEdit(region, state, reload) {
  const { el, textarea, paint, reveal } = editorPane(state);
  textarea.value = draft ?? state.current.document;
  const status = h('span', { 'data-test': 'validation' });
  const side = h('div', {});
  const changes = h('div', {});
  const summary = h('span', { class: 'diff-summary' });
  const apply = h('button', { type: 'button', class: 'button primary', 'data-test': 'apply', disabled: true }, 'Apply…');
  const validate = h('button', { type: 'button', class: 'button', 'data-test': 'validate' }, icon('check'), 'Validate');
  const reset = h('button', { type: 'button', class: 'button ghost', onclick: () => {
    textarea.value = state.current.document;
    onInput();
  } }, 'Reset');
  let result = { valid: true, problems: [], routes: null };
  let checked = '';
  let serial = 0;

  function showChanges() {
    const before = state.current.document;
    const view = diffView(before, textarea.value);
    const stats = diffStats(diffLines(before, textarea.value));
    replace(summary, view ? [h('span', { class: 'plus' }, `+${stats.added}`), h('span', { class: 'minus' }, `−${stats.removed}`)] : null);
    replace(changes, view || empty('No changes', `The editor holds version ${state.current.version}, the one in force.`));
  }

  function showResult() {
    const changed = textarea.value !== state.current.document;
    paint(new Set(result.problems.map((p) => p.line)));
    if (checked !== textarea.value) replace(status, h('span', { class: 'version-line' }, h('span', { class: 'spinner small' }), 'Checking…'));
    else if (result.valid) replace(status, pill(`Valid · ${result.routes} route${result.routes === 1 ? '' : 's'}`, 'ok'));
    else replace(status, pill(`${result.problems.length} problem${result.problems.length === 1 ? '' : 's'} · cannot be applied`, 'bad'));
    apply.disabled = !(changed && result.valid && checked === textarea.value);
    replace(side, result.valid || checked !== textarea.value
      ? null
      : h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Problems'), h('span', { class: 'hint' }, 'click one to jump to it')),
        h('div', { class: 'card-body' }, problemList(result.problems, reveal))));
  }

  async function check() {
    const text = textarea.value;
    const mine = ++serial;
    try {
      const answer = await api('POST', '/policy/validate', { yaml: text });
      if (mine !== serial) return;
      result = answer;
      checked = text;
    } catch (error) {
      if (mine !== serial) return;
      result = { valid: false, problems: [], routes: 0 };
      checked = text;
      toast(`Could not validate: ${error.message}`, 'bad');
    }
    showResult();
  }
  const checkSoon = debounce(check, 500);

  function onInput() {
    draft = textarea.value === state.current.document ? null : textarea.value;
    paint(new Set(result.problems.map((p) => p.line)));
    showChanges();
    showResult();
    checkSoon();
  }
  textarea.addEventListener('input', onInput);
  validate.addEventListener('click', check);
  apply.addEventListener('click', async () => {
    const text = textarea.value;
    const stats = diffStats(diffLines(state.current.document, text));
    const applied = await actionDialog({
      title: 'Apply this policy',
      lead: `Replaces version ${state.current.version} on every edge (+${stats.added} −${stats.removed} lines). Live connections the new policy no longer allows are closed.`,
      confirmLabel: 'Apply policy', danger: false, reasonRequired: false, reasonLabel: 'Message', placeholder: 'What changed and why',
      run: async ({ reason }) => {
        try {
          return await api('PUT', '/policy', { query: { message: reason, wait: true }, yaml: text });
        } catch (error) {
          if (error instanceof ApiError && error.body && error.body.problems) {
            result = { valid: false, problems: error.body.problems, routes: 0 };
            checked = text;
            showResult();
          }
          throw error;
        }
      },
      done: (answer) => receiptView(`Version ${answer.version} is in force`, answer.receipt),
    });
    if (applied) {
      draft = null;
      await reload();
    }
  });

  side.className = 'problems-slot';
  replace(region,
    h('div', { class: 'policy-grid edit' },
      h('section', { class: 'card editor-card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Editor'), h('div', { class: 'actions' }, reset, validate, apply)),
        el,
        h('div', { class: 'editor-status' }, status, h('span', { class: 'hint' }, 'YAML · validated as you type'))),
      side,
      h('section', { class: 'card changes-card' }, h('div', { class: 'card-head' }, h('h2', {}, `Changes against version ${state.current.version}`), summary), changes)));
  showChanges();
  paint();
  checked = '';
  check();
}

function renderHistory(region, state, reload) {
  replace(region, h('section', { class: 'card' }, loading('Loading history…')));
  api('GET', '/policy/history', { query: { limit: 50 } }).then((versions) => {
    if (versions.length === 0) {
      replace(region, h('section', { class: 'card' }, empty('No versions yet', 'Apply a policy in the editor to create version 1.')));
      return;
    }
    const detail = h('div');
    const show = (v) => {
      const view = diffView(v.document, state.current.document);
      replace(detail, h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, `Version ${v.version}`), h('span', { class: 'hint' }, v.version === state.current.version ? 'in force' : `diff to version ${state.current.version} in force`)),
        v.version === state.current.version || !view ? h('pre', { class: 'doc-view' }, v.document) : view));
      detail.scrollIntoView({ behavior: 'smooth', block: 'start' });
    };
    const rollback = async (v) => {
      const done = await actionDialog({
        title: `Roll back to version ${v.version}`,
        lead: `Version ${v.version} is applied again as a new version, on every edge.`,
        confirmLabel: 'Roll back', danger: false, reasonRequired: false, reasonLabel: 'Message', placeholder: `rollback to version ${v.version}`,
        run: ({ reason }) => api('POST', '/policy/rollback', { query: { wait: true }, json: { version: v.version, message: reason || undefined } }),
        done: (answer) => receiptView(`Version ${answer.version} is in force`, answer.receipt, `A copy of version ${v.version}.`),
      });
      if (done) {
        draft = null;
        await reload();
      }
    };
    replace(region,
      h('section', { class: 'card' },
        h('div', { class: 'table-wrap' }, h('table', { class: 'responsive', 'data-test': 'history' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Version'), h('th', {}, 'Applied'), h('th', {}, 'By'), h('th', {}, 'Message'), h('th', {}, ''))),
          h('tbody', {}, versions.map((v) => h('tr', { dataset: { version: v.version } },
            cell('Version', {}, h('span', { class: 'cell-main' }, `v${v.version}`), ' ', v.version === state.current.version ? pill('in force', 'ok') : null),
            cell('Applied', {}, when(v.created_at)),
            cell('By', {}, v.author),
            cell('Message', {}, v.message),
            h('td', { class: 'actions' }, h('div', { class: 'actions' },
              h('button', { type: 'button', class: 'button small', onclick: () => show(v) }, v.version === state.current.version ? 'View' : 'Diff'),
              v.version === state.current.version ? null
                : h('button', { type: 'button', class: 'button small', 'data-test': 'rollback', onclick: () => rollback(v) }, icon('history'), 'Roll back'))))))))),
      detail);
  }).catch((error) => replace(region, alertBox(error.message)));
}

function renderExplain(region, state, showLine) {
  const input = (name, attrs = {}) => h('input', { name, autocomplete: 'off', ...attrs });
  const email = input('email', { type: 'email', placeholder: 'ada@corp.example' });
  const groups = input('groups', { placeholder: 'admins, dev' });
  const credential = h('select', { name: 'credential' }, ['browser', 'bearer', 'service'].map((c) => h('option', { value: c }, c)));
  const host = input('host', { placeholder: 'wiki.corp.example', required: true });
  const path = input('path', { value: '/' });
  const method = h('select', { name: 'method' }, ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'].map((m) => h('option', { value: m }, m)));
  const ip = input('ip', { value: '203.0.113.7', required: true });
  const at = input('at', { type: 'datetime-local' });
  const sessionAge = input('session_age', { placeholder: 'e.g. 2h' });
  const answer = h('div', {}, empty('Ask a question', 'Who, where and when: the answer is what the edges would decide right now.'));
  const form = h('form', { 'data-test': 'explain-form', onsubmit: async (event) => {
    event.preventDefault();
    replace(answer, loading('Evaluating…'));
    try {
      const result = await api('POST', '/policy/explain', { json: {
        email: email.value.trim() || undefined,
        groups: groups.value.split(',').map((g) => g.trim()).filter(Boolean),
        credential: credential.value,
        host: host.value.trim(), path: path.value.trim() || '/', method: method.value, ip: ip.value.trim(),
        at: at.value ? new Date(at.value).toISOString() : undefined,
        session_age: sessionAge.value.trim() || undefined,
      } });
      const kind = result.decision === 'allow' ? 'ok' : result.decision === 'deny' ? 'bad' : 'warn';
      const place = (p) => (p ? [h('span', { class: 'cell-main' }, p.name), ' ',
        h('a', { href: '#/policy', onclick: (e) => { e.preventDefault(); showLine(p.line, p.column); } }, `line ${p.line}:${p.column}`),
        h('div', { class: 'cell-sub' }, p.detail)] : h('span', { class: 'cell-sub' }, '—'));
      replace(answer, h('div', { class: 'decision', 'data-test': 'decision' },
        h('div', { class: 'verdict' }, pill(result.decision.replace('-', ' '), kind)),
        h('p', {}, result.reason),
        h('dl', {},
          h('dt', {}, 'Route'), h('dd', {}, place(result.route)),
          h('dt', {}, 'Rule'), h('dd', {}, place(result.rule)),
          h('dt', {}, 'Policy'), h('dd', {}, result.policy_version ? `version ${result.policy_version}` : 'none applied (deny everything)'),
          h('dt', {}, 'At'), h('dd', {}, when(result.at))),
        result.rules && result.rules.length ? h('div', { class: 'rule-checks' },
          h('h3', {}, 'Rules, in order'),
          h('ol', { 'data-test': 'rule-checks' }, result.rules.map((r) => h('li', { class: r.matched ? 'matched' : 'failed' },
            h('span', { class: 'cell-main' }, r.rule.name), ' ',
            h('a', { href: '#/policy', onclick: (e) => { e.preventDefault(); showLine(r.rule.line, r.rule.column); } }, `line ${r.rule.line}`),
            h('div', { class: 'cell-sub' }, r.matched ? `matched: ${r.rule.detail}` : `not matched: ${r.failed}`))))) : null));
    } catch (error) {
      replace(answer, alertBox(error.message));
    }
  } },
  h('div', { class: 'explain-form' },
    field('Email', email, 'Empty: an anonymous request'), field('Groups', groups, 'Comma-separated'), field('Credential', credential),
    field('Host', host), field('Path', path), field('Method', method), field('Client IP', ip),
    field('When', at, 'Empty: now'), field('Session age', sessionAge, 'Empty: just signed in')),
  h('div', { class: 'dialog-foot' }, h('button', { type: 'submit', class: 'button primary', 'data-test': 'explain' }, icon('play'), 'Explain')));
  replace(region, h('div', { class: 'policy-grid' },
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Request'), h('span', { class: 'hint' }, `evaluated against version ${state.current.version}`)), h('div', { class: 'card-body' }, form)),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Decision')), h('div', { class: 'card-body' }, answer))));
}

export function renderPolicy(main) {
  const state = { current: null, reveal: null };
  const version = h('div', { class: 'sub' }, loading());
  const region = h('div', {}, loading('Loading the policy…'));
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  replace(main,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Policy'), version)),
    tabs, region);

  function showLine(line, column) {
    select('edit');
    if (state.reveal) state.reveal(line, column);
  }
  function select(name) {
    tab = name;
    replace(tabs, [['edit', 'Edit'], ['history', 'History'], ['explain', 'Explain']].map(([value, label]) =>
      h('button', { type: 'button', role: 'tab', class: tab === value ? 'on' : '', 'aria-selected': String(tab === value), dataset: { tab: value }, onclick: () => select(value) }, label)));
    if (!state.current) return;
    if (tab === 'edit') renderEdit(region, state, reload);
    else if (tab === 'history') renderHistory(region, state, reload);
    else renderExplain(region, state, showLine);
  }
  async function reload() {
    try {
      state.current = await api('GET', '/policy');
      replace(version, versionLine(state.current));
      select(tab);
    } catch (error) {
      replace(region, alertBox(`Could not load the policy: ${error.message}`));
    }
  }
  select(tab);
  reload();
  return null;
}
