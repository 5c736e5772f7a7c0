// DOM helpers. Every string goes into the page as a text node or through an
// attribute setter — never as markup — so user-controlled data (user agents,
// emails, reasons) renders as text whatever it contains.

/** Creates an element: h('td', { class: 'num', dataset: { label: 'Live' } }, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (Object.hasOwn(PROPS, key)) el[PROPS[key]] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

const PROPS = { value: 'value', checked: 'checked', disabled: 'disabled', hidden: 'hidden', htmlFor: 'htmlFor', text: 'textContent' };

/** Appends children: strings and numbers as text, nodes as they are, arrays flattened. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const SVG = 'http://www.w3.org/2000/svg';

/** Stroke icons (24×24): fixed path data, never user input. */
const ICONS = {
  sessions: ['M3 12h4l3 8 4-16 3 8h4'],
  user: ['M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2', 'M12 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z'],
  policy: ['M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z', 'M9 12l2 2 4-4'],
  audit: ['M8 6h13', 'M8 12h13', 'M8 18h13', 'M3 6h.01', 'M3 12h.01', 'M3 18h.01'],
  edges: ['M4 4h16v6H4z', 'M4 14h16v6H4z', 'M8 7h.01', 'M8 17h.01'],
  logout: ['M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4', 'M16 17l5-5-5-5', 'M21 12H9'],
  search: ['M11 19a8 8 0 1 0 0-16 8 8 0 0 0 0 16z', 'M21 21l-4.35-4.35'],
  refresh: ['M23 4v6h-6', 'M1 20v-6h6', 'M3.5 9a9 9 0 0 1 14.9-3.4L23 10', 'M1 14l4.6 4.4A9 9 0 0 0 20.5 15'],
  check: ['M20 6L9 17l-5-5'],
  lock: ['M5 11h14v10H5z', 'M8 11V7a4 4 0 0 1 8 0v4'],
  unlock: ['M5 11h14v10H5z', 'M8 11V7a4 4 0 0 1 7.9-1'],
  stop: ['M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z', 'M15 9l-6 6', 'M9 9l6 6'],
  key: ['M21 2l-2 2m-7.6 7.6a5.5 5.5 0 1 1-7.8 7.8 5.5 5.5 0 0 1 7.8-7.8zm0 0L15.5 7.5m0 0l3 3L22 7l-3-3m-3.5 3.5L19 4'],
  empty: ['M22 12h-6l-2 3h-4l-2-3H2', 'M5.5 5.1L2 12v6a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-6l-3.5-6.9A2 2 0 0 0 16.8 4H7.2a2 2 0 0 0-1.7 1.1z'],
  play: ['M5 3l14 9-14 9V3z'],
  history: ['M3 3v5h5', 'M3.05 13A9 9 0 1 0 6 5.3L3 8', 'M12 7v5l4 2'],
};

/** An inline SVG icon. */
export function icon(name) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

/** A table cell with a label (shown before the value when rows become cards on narrow screens). */
export function cell(label, attrs, ...children) {
  return h('td', { ...attrs, dataset: { ...(attrs && attrs.dataset), label } }, h('div', { class: 'cell' }, children));
}

/** A status pill: kind is ok, warn, bad, accent or '' (neutral). */
export function pill(text, kind = '', extra = '') {
  return h('span', { class: `pill ${kind} ${extra}`.trim() }, text);
}

/** The loading state of a region. */
export function loading(text = 'Loading…') {
  return h('div', { class: 'loading', role: 'status' }, h('div', { class: 'spinner small' }), text);
}

/** The empty state of a region. */
export function empty(title, hint = '') {
  return h('div', { class: 'empty' }, icon('empty'), h('div', { class: 'title' }, title), hint ? h('div', {}, hint) : null);
}

/** An error box. */
export function alertBox(message, kind = 'bad') {
  return h('div', { class: `alert ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, message);
}

/** A labelled form field around `control`. */
export function field(label, control, hint = '') {
  return h('label', { class: 'field' }, h('span', {}, label), control, hint ? h('small', {}, hint) : null);
}

let toastBox = null;

/** A short message in the corner. */
export function toast(message, kind = '') {
  if (!toastBox || !toastBox.isConnected) {
    toastBox = h('div', { class: 'toasts', 'aria-live': 'polite' });
    document.body.append(toastBox);
  }
  const el = h('div', { class: `toast ${kind}` }, message);
  toastBox.append(el);
  setTimeout(() => el.remove(), 4500);
}

/** Calls `fn` at most once per `ms`, after the last call. */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
