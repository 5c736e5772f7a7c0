// A line diff (longest common subsequence, with the common head and tail
// trimmed first) shown as unified hunks with three lines of context.

import { h } from './dom.js';

/** The edit script turning `before` into `after`: [{ op: ' ' | '+' | '-', text, a, b }]. */
export function diffLines(before, after) {
  const a = before.split('\n');
  const b = after.split('\n');
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head += 1;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail += 1;
  const x = a.slice(head, a.length - tail);
  const y = b.slice(head, b.length - tail);
  // lcs[i][j]: length of the LCS of x[i..] and y[j..].
  const lcs = Array.from({ length: x.length + 1 }, () => new Uint32Array(y.length + 1));
  for (let i = x.length - 1; i >= 0; i -= 1) {
    for (let j = y.length - 1; j >= 0; j -= 1) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const ops = [];
  for (let k = 0; k < head; k += 1) ops.push({ op: ' ', text: a[k], a: k + 1, b: k + 1 });
  let i = 0;
  let j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) {
      ops.push({ op: ' ', text: x[i], a: head + i + 1, b: head + j + 1 });
      i += 1;
      j += 1;
    } else if (i < x.length && (j >= y.length || lcs[i + 1][j] >= lcs[i][j + 1])) {
      // Removals before additions, as unified diffs show them.
      ops.push({ op: '-', text: x[i], a: head + i + 1, b: null });
      i += 1;
    } else {
      ops.push({ op: '+', text: y[j], a: null, b: head + j + 1 });
      j += 1;
    }
  }
  for (let k = 0; k < tail; k += 1) {
    ops.push({ op: ' ', text: a[a.length - tail + k], a: a.length - tail + k + 1, b: b.length - tail + k + 1 });
  }
  return ops;
}

/** Lines added and removed. */
export function diffStats(ops) {
  return {
    added: ops.filter((o) => o.op === '+').length,
    removed: ops.filter((o) => o.op === '-').length,
  };
}

/** The diff as unified hunks (three lines of context), or null when nothing changed. */
export function diffView(before, after) {
  const ops = diffLines(before, after);
  const changed = ops.map((o, n) => (o.op === ' ' ? -1 : n)).filter((n) => n >= 0);
  if (changed.length === 0) return null;
  const keep = new Set();
  for (const n of changed) for (let k = Math.max(0, n - 3); k <= Math.min(ops.length - 1, n + 3); k += 1) keep.add(k);
  const rows = [];
  let last = -2;
  for (let n = 0; n < ops.length; n += 1) {
    if (!keep.has(n)) continue;
    if (n !== last + 1) {
      const o = ops[n];
      rows.push(h('div', { class: 'hunk' }, `@@ line ${o.b ?? o.a} @@`));
    }
    const o = ops[n];
    const kind = o.op === '+' ? 'add' : o.op === '-' ? 'del' : '';
    rows.push(h('div', { class: kind }, h('span', { class: 'ln' }, String(o.op === '-' ? o.a : o.b)), `${o.op} ${o.text}`));
    last = n;
  }
  return h('div', { class: 'diff', 'data-test': 'diff' }, rows);
}
