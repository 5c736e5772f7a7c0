// How times, durations and counts are shown: every time both relative
// ("3 min ago") and absolute (local time), refreshed while the page is open.

import { h } from './dom.js';

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const monthDay = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago", or "in 5 min". */
export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  const seconds = Math.round((now - t) / 1000);
  const abs = Math.abs(seconds);
  let text;
  if (abs < 5) return 'just now';
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)} h`;
  else text = `${Math.floor(abs / 86400)} d`;
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

/** Local time, e.g. "10:04:31" today, "Nov 23, 10:04:31" this year, with the year before. */
export function absolute(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return '';
  const today = new Date();
  if (t.toDateString() === today.toDateString()) return timeOnly.format(t);
  if (t.getFullYear() === today.getFullYear()) return `${monthDay.format(t)}, ${timeOnly.format(t)}`;
  return dateTime.format(t);
}

/** A <time> showing both forms; refreshed by `refreshTimes`. */
export function when(iso) {
  if (!iso) return h('span', { class: 'cell-sub' }, '—');
  return h('time', { class: 'when', datetime: iso, title: dateTime.format(new Date(iso)) },
    h('span', { class: 'rel' }, relative(iso)),
    h('span', { class: 'abs' }, absolute(iso)));
}

/** Updates the relative part of every <time class="when"> under `root`. */
export function refreshTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll('time.when')) {
    const rel = el.querySelector('.rel');
    if (rel) rel.textContent = relative(el.dateTime, now);
  }
}

/** "42 ms", "1.3 s". */
export function elapsed(ms) {
  if (ms === null || ms === undefined) return '—';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
}

/** "1 session", "3 sessions". */
export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** A datetime-local input's value as RFC 3339 (local time), or undefined. */
export function fromLocalInput(value) {
  if (!value) return undefined;
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}
