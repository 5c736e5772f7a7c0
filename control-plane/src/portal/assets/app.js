// The portal's entry point: asks /portal/session who is signed in, then
// draws the shell (navigation, signed-in user) and the page of the URL's
// hash (#/sessions, #/user/<email>, #/policy, #/audit, #/edges).

import { h, replace, icon, toast } from './dom.js';
import { portal, setCsrfToken } from './api.js';
import { refreshTimes } from './format.js';
import { renderLogin } from './pages/login.js';
import { renderSessions } from './pages/sessions.js';
import { renderUser } from './pages/user.js';
import { renderPolicy } from './pages/policy.js';
import { renderAudit } from './pages/audit.js';
import { renderEdges } from './pages/edges.js';

const PAGES = [
  { path: 'sessions', label: 'Sessions', icon: 'sessions', render: renderSessions },
  { path: 'user', label: 'User', icon: 'user', render: renderUser },
  { path: 'policy', label: 'Policy', icon: 'policy', render: renderPolicy },
  { path: 'audit', label: 'Audit log', icon: 'audit', render: renderAudit },
  { path: 'edges', label: 'Edges', icon: 'edges', render: renderEdges },
];

const root = document.getElementById('app');
let session = null;
let cleanup = null;
let main = null;
let nav = null;

/** `#/user/ada%40corp.example` → { page: 'user', arg: 'ada@corp.example' }. */
function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const arg = rest.length ? decodeURIComponent(rest.join('/')) : '';
  return { page: PAGES.some((p) => p.path === page) ? page : 'sessions', arg };
}

/** Navigates to a page. */
export function go(page, arg = '') {
  location.hash = `#/${page}${arg ? `/${encodeURIComponent(arg)}` : ''}`;
}

function showPage() {
  if (!session) return;
  if (cleanup) cleanup();
  cleanup = null;
  const { page, arg } = route();
  const spec = PAGES.find((p) => p.path === page);
  for (const link of nav.querySelectorAll('a')) link.classList.toggle('active', link.dataset.page === page);
  document.title = `${spec.label} · Portcullis`;
  replace(main);
  main.scrollTop = 0;
  cleanup = spec.render(main, { session, arg, go }) || null;
}

async function signOut() {
  try {
    await portal('POST', '/logout');
  } catch (error) {
    toast(error.message, 'bad');
  }
  session = null;
  setCsrfToken('');
  await start();
}

function drawShell() {
  nav = h('nav', { class: 'nav', 'aria-label': 'Portal' },
    PAGES.map((p) => h('a', { href: `#/${p.path}`, dataset: { page: p.path } }, icon(p.icon), p.label)));
  const how = session.method === 'oidc' ? 'Single sign-on' : 'Admin API token';
  main = h('main', { class: 'main', id: 'main' });
  replace(root,
    h('div', { class: 'shell' },
      h('aside', { class: 'sidebar' },
        h('div', { class: 'brand' }, h('img', { src: '/portal/assets/favicon.svg', alt: '', width: 28, height: 28 }),
          h('div', {}, 'Portcullis', h('small', {}, 'Admin portal'))),
        nav,
        h('div', { class: 'me' },
          h('div', { class: 'who', 'data-test': 'signed-in-as', title: session.user }, session.user),
          h('div', { class: 'how' }, how),
          h('button', { class: 'button small ghost', type: 'button', 'data-test': 'sign-out', onclick: signOut }, icon('logout'), 'Sign out'))),
      main));
  root.classList.remove('boot');
  root.removeAttribute('aria-busy');
}

async function start() {
  if (cleanup) cleanup();
  cleanup = null;
  let answer;
  try {
    answer = await portal('GET', '/session');
  } catch (error) {
    answer = { authenticated: false, oidc: false, problem: error.message };
  }
  if (!answer.authenticated) {
    session = null;
    root.classList.remove('boot');
    root.removeAttribute('aria-busy');
    document.title = 'Sign in · Portcullis';
    renderLogin(root, { oidc: answer.oidc, problem: answer.problem, onSignedIn: start });
    return;
  }
  session = answer;
  setCsrfToken(session.csrf_token);
  drawShell();
  showPage();
}

window.addEventListener('hashchange', showPage);
window.addEventListener('portcullis:signed-out', () => {
  if (session) {
    session = null;
    toast('Your portal session ended. Sign in again.', 'bad');
    start();
  }
});
setInterval(() => refreshTimes(root), 5000);
start();
