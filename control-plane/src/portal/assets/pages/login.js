// Sign in: single sign-on through the OpenID provider (when configured) or
// an admin API token (the first start, or no IdP).

import { h, replace, alertBox, field, icon } from '../dom.js';
import { portal } from '../api.js';

export function renderLogin(root, { oidc, problem, onSignedIn }) {
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'pcat_…', required: true, spellcheck: 'false' });
  const message = h('div', {}, problem ? alertBox(problem) : null);
  const submit = h('button', { type: 'submit', class: `button ${oidc ? '' : 'primary'}`, 'data-test': 'token-submit' }, icon('key'), 'Sign in with token');
  const form = h('form', { 'data-test': 'token-form', onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      await portal('POST', '/token-login', { json: { token: token.value } });
      await onSignedIn();
    } catch (error) {
      replace(message, alertBox(error.status === 401 ? 'That token is unknown, revoked or expired.' : error.message));
      submit.disabled = false;
      token.select();
    }
  } },
  field('Admin API token', token, 'The token printed at the first start, or one from POST /api/v1/admin-tokens.'),
  submit);
  replace(root,
    h('div', { class: 'login-screen' },
      h('main', { class: 'login-card' },
        h('div', { class: 'brand' }, h('img', { src: '/portal/assets/favicon.svg', alt: '', width: 32, height: 32 }),
          h('div', {}, 'Portcullis', h('small', {}, 'Admin portal'))),
        h('h1', {}, 'Sign in'),
        h('p', { class: 'lead' }, 'Live sessions, terminations, policy and audit for your zero-trust edge.'),
        message,
        oidc ? [
          h('a', { class: 'button primary', href: '/portal/login', 'data-test': 'sso' }, 'Sign in with single sign-on'),
          h('div', { class: 'divider' }, 'or use an admin API token'),
        ] : null,
        form,
        h('p', { class: 'login-foot' }, 'Every action you take here is recorded in the audit log with your name and address.'))));
  if (!oidc) token.focus();
}
