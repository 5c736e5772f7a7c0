// A real OpenID provider (npm `oidc-provider`) for Portcullis's process-level
// OIDC tests, on plain HTTP on 127.0.0.1.
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json is `{ "port": N, "clients": [ ...oidc-provider client metadata... ] }`,
// optionally with `"device_flow": false` to leave the device flow out.
// The issuer is `http://127.0.0.1:N`; discovery is at
// `http://127.0.0.1:N/.well-known/openid-configuration`. Prints
// `ready http://127.0.0.1:N` on standard output once listening and exits 0 on
// SIGTERM or SIGINT. Everything is in memory: a restart forgets sessions.
//
// What it serves (see cli/tests/control_plane/idp.rs for the Rust side):
//
// - Accounts alice, bob and mallory; the login name is the `sub`. The
//   development login form (devInteractions) accepts any password, then asks
//   for consent once per client.
// - Scopes `openid email profile groups`; `email`, `email_verified`, `name`,
//   `preferred_username` and `groups` are put IN the ID token
//   (conformIdTokenClaims: false), and every ID token carries `sid` and
//   `auth_time` (clients default to `require_auth_time`).
// - Authorization code flow with PKCE (S256) required.
// - The device flow (RFC 8628; `device_authorization_endpoint` in discovery)
//   unless the configuration says `"device_flow": false`. Clients that use it
//   list `urn:ietf:params:oauth:grant-type:device_code` in `grant_types`.
//   The verification page (`/device?user_code=…`) asks to confirm the code,
//   then shows the usual login and consent forms.
// - RP-initiated logout (end_session_endpoint) and back-channel logout; the
//   logout token always carries `sid` (backchannel_logout_session_required
//   defaults to true here).
// - client_credentials with `resource=<absolute http(s) URL>`: an RS256 JWT
//   access token (`typ: at+jwt`, `aud` = the resource, `sub` = `client_id` =
//   the client's id, `scope` = the requested scopes among `api`), plus
//   `email` / `groups` when the client's metadata has `x_email` / `x_groups`.
//   User access tokens for a resource carry the user's `email` and `groups`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';

/** The test users: login name (= sub) -> claims. */
const ACCOUNTS = {
  alice: { email: 'alice@corp.example', name: 'Alice Admin', groups: ['admins', 'dev'] },
  bob: { email: 'bob@corp.example', name: 'Bob Builder', groups: ['dev'] },
  mallory: { email: 'mallory@evil.example', name: 'Mallory Mallet', groups: [] },
};

/** Scopes a resource server (any absolute http(s) URL) grants. */
const RESOURCE_SCOPE = 'api';

function log(...args) {
  console.error(new Date().toISOString(), ...args);
}

function readConfig() {
  const path = process.argv[2];
  if (!path) {
    console.error('usage: node provider.mjs CONFIG.json');
    process.exit(64);
  }
  const config = JSON.parse(readFileSync(path, 'utf8'));
  if (!Number.isInteger(config.port) || config.port <= 0 || config.port > 65535) {
    throw new Error(`${path}: "port" must be a TCP port number`);
  }
  if (!Array.isArray(config.clients)) {
    throw new Error(`${path}: "clients" must be an array of client metadata`);
  }
  return config;
}

/** One RSA signing key, new on every start. */
function signingKeys() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: `idp-${randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' }] };
}

function findAccount(ctx, id) {
  const account = Object.hasOwn(ACCOUNTS, id) ? ACCOUNTS[id] : undefined;
  if (!account) {
    log(`unknown account ${JSON.stringify(id)} (known: ${Object.keys(ACCOUNTS).join(', ')})`);
    return undefined;
  }
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: account.email,
        email_verified: true,
        name: account.name,
        preferred_username: id,
        groups: account.groups,
      };
    },
  };
}

function isResourceUrl(value) {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.hash;
  } catch {
    return false;
  }
}

const { port, clients, device_flow: deviceFlow = true } = readConfig();
const issuer = `http://${HOST}:${port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: signingKeys(),
  findAccount,

  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // Claims requested with scopes go into the ID token, not only userinfo.
  conformIdTokenClaims: false,

  clientDefaults: {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    backchannel_logout_session_required: true,
    // ID tokens carry `auth_time` (OpenID Connect Registration
    // `require_auth_time`): Portcullis's control plane requires it.
    require_auth_time: true,
  },
  extraClientMetadata: {
    // Identity claims for a service client's client_credentials tokens.
    properties: ['x_email', 'x_groups'],
    validator(ctx, key, value) {
      if (value === undefined) return;
      const ok = key === 'x_email'
        ? typeof value === 'string'
        : Array.isArray(value) && value.every((group) => typeof group === 'string');
      if (!ok) {
        throw new errors.InvalidClientMetadata(`${key} must be ${key === 'x_email' ? 'a string' : 'an array of strings'}`);
      }
    },
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') {
      const client = await provider.Client.find(token.clientId);
      const claims = {};
      if (client?.x_email !== undefined) claims.email = client.x_email;
      if (client?.x_groups !== undefined) claims.groups = client.x_groups;
      return claims;
    }
    if (token.kind === 'AccessToken' && token.accountId && Object.hasOwn(ACCOUNTS, token.accountId)) {
      const { email, groups } = ACCOUNTS[token.accountId];
      return { email, groups };
    }
    return undefined;
  },

  pkce: {
    methods: ['S256'],
    required: () => true,
  },

  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: deviceFlow !== false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource requested: none (ID token + userinfo access token).
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, resourceIndicator) {
        if (!isResourceUrl(resourceIndicator)) {
          throw new errors.InvalidTarget('resource must be an absolute http(s) URL');
        }
        return {
          scope: RESOURCE_SCOPE,
          accessTokenFormat: 'jwt',
          // A resource on a `short-lived.` host gets 2-second tokens (expiry tests).
          accessTokenTTL: new URL(resourceIndicator).hostname.startsWith('short-lived.') ? 2 : 600,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },

  // Plain HTTP on 127.0.0.1: cookies cannot be Secure, and cookies ignore
  // ports, so the names are prefixed to never collide with the edge's.
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    names: {
      session: 'idp_session',
      interaction: 'idp_interaction',
      resume: 'idp_interaction_resume',
    },
    long: { httpOnly: true, sameSite: 'lax', signed: true },
    short: { httpOnly: true, sameSite: 'lax', signed: true },
  },

  // Outgoing requests (back-channel logout) go to test listeners on
  // 127.0.0.1; this version does not filter loopback addresses, so only the
  // timeout is set.
  httpOptions() {
    return { signal: AbortSignal.timeout(5000) };
  },

  ttl: {
    // The resource server's own TTL when it has one (see getResourceServerInfo).
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || 600,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || 600,
    IdToken: 600,
    AuthorizationCode: 60,
    Interaction: 600,
    Grant: 86400,
    Session: 86400,
  },
});

// Every ID token carries `sid` (as Keycloak, Entra ID and Okta do), not only
// those of clients registered for back-channel logout.
if (typeof provider.Client.prototype.includeSid !== 'function') {
  throw new Error('oidc-provider changed: Client#includeSid is gone (see provider.mjs)');
}
provider.Client.prototype.includeSid = () => true;

provider.proxy = false;

for (const event of ['server_error', 'authorization.error', 'device_authorization.error', 'grant.error', 'end_session.error', 'backchannel.error']) {
  provider.on(event, (ctx, error) => log(event, error?.stack ?? error, error?.error_description ?? ''));
}
provider.on('backchannel.success', (ctx, client, accountId, sid) => {
  log('backchannel.success', client.clientId, accountId, sid);
});
provider.on('grant.success', (ctx) => log('grant.success', ctx.oidc.client?.clientId, ctx.oidc.params.grant_type));
provider.on('end_session.success', () => log('end_session.success'));

// Static clients are validated lazily; a test with bad metadata should fail
// at start, with the reason in the log.
for (const { client_id: clientId } of clients) {
  try {
    // eslint-disable-next-line no-await-in-loop
    await provider.Client.find(String(clientId));
  } catch (error) {
    log(`invalid client ${JSON.stringify(clientId)}: ${error.error_description ?? error.message}`);
    process.exit(1);
  }
}

const server = provider.listen(port, HOST, () => {
  process.stdout.write(`ready ${issuer}\n`);
});
server.on('error', (error) => {
  log('listen', error.message);
  process.exit(1);
});

function shutdown(signal) {
  log(`${signal}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
