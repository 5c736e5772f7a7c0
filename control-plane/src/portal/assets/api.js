// The portal's only way to the server: the public admin API under /api/v1
// (and /portal/* for signing in and out). The session cookie goes along by
// itself; every unsafe request also carries the session's CSRF token.

let csrfToken = '';

/** Remembers the CSRF token of the current portal session. */
export function setCsrfToken(token) {
  csrfToken = token || '';
}

/** An error answer of the API: status, stable code and message. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

async function send(method, url, { json, yaml } = {}) {
  const headers = { Accept: 'application/json' };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (yaml !== undefined) {
    headers['Content-Type'] = 'application/yaml';
    body = yaml;
  }
  if (UNSAFE.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, 'network', 'The control plane cannot be reached. Check your connection and try again.');
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: { code: 'bad_answer', message: text.slice(0, 200) } };
    }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401) window.dispatchEvent(new CustomEvent('portcullis:signed-out'));
    throw new ApiError(response.status, error.code || 'error', error.message || `HTTP ${response.status}`, data);
  }
  return data;
}

/** Builds `?a=1&b=2` from the defined, non-empty values of `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** A call to the admin API: api('GET', '/sessions', { query: {...} }). */
export function api(method, path, options = {}) {
  return send(method, `/api/v1${path}${options.query ? query(options.query) : ''}`, options);
}

/** A call to the portal's own endpoints (/portal/session, /portal/token-login, /portal/logout). */
export function portal(method, path, options = {}) {
  return send(method, `/portal${path}`, options);
}
