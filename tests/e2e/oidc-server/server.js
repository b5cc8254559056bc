// OAuth authorization server for credlock's end-to-end tests, built on
// oidc-provider (pinned in package.json). See README.md for the CLI, the
// ready line, the test routes and the clients.
//
// Only the ready line goes to stdout; everything else goes to stderr.

import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';

// oidc-provider 9 calls URL.parse (Node >= 20.18 / 22). Check before loading it.
if (typeof URL.parse !== 'function') {
  process.stderr.write(
    `oidc-server: this Node.js (${process.version}) has no URL.parse, which oidc-provider needs; `
    + 'use Node.js 22 LTS or a Node 20 build >= 20.18\n',
  );
  process.exit(1);
}

// ---------------------------------------------------------------- CLI

const USAGE = 'usage: node server.js [--port N (default 0)] [--access-ttl SECONDS (default 3600)] '
  + '[--slow-storage-ms N (default 0)] [--device-interval SECONDS (default 5)] '
  + '[--device-min-poll SECONDS (default 0: off)] [--device-code-ttl SECONDS (default 600)] '
  + '[--revocation 0|1 (default 1)] [--require-nonce 0|1 (default 0)]';

function parseArgs(argv) {
  const opts = {
    port: 0, accessTtl: 3600, slowStorageMs: 0, deviceInterval: 5, deviceMinPoll: 0, deviceCodeTtl: 600,
    revocation: 1, requireNonce: 0,
  };
  const names = {
    '--port': 'port',
    '--access-ttl': 'accessTtl',
    '--slow-storage-ms': 'slowStorageMs',
    '--device-interval': 'deviceInterval',
    '--device-min-poll': 'deviceMinPoll',
    '--device-code-ttl': 'deviceCodeTtl',
    '--revocation': 'revocation',
    '--require-nonce': 'requireNonce',
  };
  const mins = {
    port: 0, accessTtl: 1, slowStorageMs: 0, deviceInterval: 1, deviceMinPoll: 0, deviceCodeTtl: 1,
    revocation: 0, requireNonce: 0,
  };
  for (let i = 0; i < argv.length; i += 1) {
    let flag = argv[i];
    let value;
    const eq = flag.indexOf('=');
    if (eq !== -1) {
      value = flag.slice(eq + 1);
      flag = flag.slice(0, eq);
    }
    if (flag === '--help' || flag === '-h') {
      process.stderr.write(`${USAGE}\n`);
      process.exit(0);
    }
    const key = names[flag];
    if (!key) {
      process.stderr.write(`oidc-server: unknown argument ${JSON.stringify(argv[i])}\n${USAGE}\n`);
      process.exit(2);
    }
    if (value === undefined) {
      i += 1;
      value = argv[i];
    }
    if (value === undefined || !/^\d+$/.test(value) || Number(value) < mins[key]
      || (key === 'port' && Number(value) > 65535)
      || ((key === 'revocation' || key === 'requireNonce') && Number(value) > 1)) {
      process.stderr.write(`oidc-server: ${flag} needs an integer >= ${mins[key]}, got ${JSON.stringify(value)}\n${USAGE}\n`);
      process.exit(2);
    }
    opts[key] = Number(value);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// stdout carries only the ready line. oidc-provider prints its NOTICEs with
// console.info (stdout), e.g. the first time a default introspection or
// revocation allowedPolicy runs, so send every console method to stderr.
for (const method of ['log', 'info', 'debug', 'trace', 'dir', 'table']) {
  console[method] = console.error;
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

const { default: Provider } = await import('oidc-provider');

// ---------------------------------------------------------------- storage

// Plain Map-based adapter. The bundled memory adapter is an LRU capped at
// 1000 entries, which evicts live tokens under load. With --slow-storage-ms N
// every call waits N ms first, so find() and consume() of a refresh token are
// no longer back to back and concurrent reuses can slip through (grant forks).

const epochTime = () => Math.floor(Date.now() / 1000);
// With 0 no timer at all: a setTimeout(0) per call would already be enough to
// let concurrent requests interleave between find() and consume().
const delay = () => (opts.slowStorageMs > 0
  ? new Promise((resolve) => { setTimeout(resolve, opts.slowStorageMs); })
  : undefined);

const store = new Map(); // `${model}:${id}` -> { payload, expiresAt (ms) }
const grantMembers = new Map(); // grantId -> Set of store keys
const uidIndex = new Map(); // session uid -> id
const userCodeIndex = new Map(); // user code -> id

function liveEntry(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry;
}

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    await delay();
    const key = this.key(id);
    // Device codes outlive their expiry here by a grace period, so that polling an expired
    // one reaches oidc-provider's own check (expired_token) instead of "not found".
    const grace = this.model === 'DeviceCode' ? 300 : 0;
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + (expiresIn + grace) * 1000 : Infinity;
    store.set(key, { payload: structuredClone(payload), expiresAt });
    if (payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
    if (this.model === 'Session' && payload.uid) uidIndex.set(payload.uid, id);
    if (payload.userCode) userCodeIndex.set(payload.userCode, id);
  }

  async find(id) {
    await delay();
    const entry = liveEntry(this.key(id));
    return entry ? structuredClone(entry.payload) : undefined;
  }

  async findByUid(uid) {
    return this.find(uidIndex.get(uid));
  }

  async findByUserCode(userCode) {
    return this.find(userCodeIndex.get(userCode));
  }

  async consume(id) {
    await delay();
    const entry = liveEntry(this.key(id));
    if (entry) entry.payload.consumed = epochTime();
  }

  async destroy(id) {
    await delay();
    const key = this.key(id);
    const entry = store.get(key);
    store.delete(key);
    if (entry?.payload.grantId) grantMembers.get(entry.payload.grantId)?.delete(key);
  }

  async revokeByGrantId(grantId) {
    await delay();
    const members = grantMembers.get(grantId);
    if (!members) return;
    const prefix = `${this.model}:`;
    for (const key of [...members]) {
      if (key.startsWith(prefix)) {
        store.delete(key);
        members.delete(key);
      }
    }
    if (members.size === 0) grantMembers.delete(grantId);
  }
}

// ---------------------------------------------------------------- provider

const CLIENTS = [
  { client_id: 'cli-basic', client_secret: 'p@ss:w/rd+%&=?', token_endpoint_auth_method: 'client_secret_basic' },
  { client_id: 'cli-post', client_secret: 'post-secret-1', token_endpoint_auth_method: 'client_secret_post' },
  { client_id: 'cli-public', token_endpoint_auth_method: 'none' },
].map((c) => ({
  ...c,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/callback'],
  scope: 'openid offline_access',
  id_token_signed_response_alg: 'ES256',
}));
// Login clients (credlock login): public, native (RFC 8252 loopback redirect on any port).
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
CLIENTS.push(
  {
    client_id: 'cli-native',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    scope: 'openid offline_access',
    id_token_signed_response_alg: 'ES256',
  },
  {
    client_id: 'cli-device',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: [DEVICE_GRANT, 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    scope: 'openid offline_access',
    id_token_signed_response_alg: 'ES256',
  },
);
// A machine client (RFC 6749 §4.4): client credentials only, no user, no refresh token.
CLIENTS.push({
  client_id: 'cli-machine',
  client_secret: 'machine-secret-9z',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  id_token_signed_response_alg: 'ES256',
});
const CLIENT_IDS = new Set(CLIENTS.map((c) => c.client_id));

const SCOPE = 'openid offline_access';
const ACCOUNT_ID = 'user-1';
const REFRESH_TTL = 24 * 3600;
const ROUTES = {
  token: '/token',
  device_authorization: '/device/auth',
  code_verification: '/device',
  revocation: '/token/revocation',
  introspection: '/token/introspection',
};

let appHandler = (req, res) => {
  res.writeHead(503, { 'content-type': 'application/json' });
  res.end('{"error":"starting"}');
};
const server = http.createServer((req, res) => appHandler(req, res));

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(opts.port, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'es256-e2e' };

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: CLIENTS,
  jwks: { keys: [signingJwk] },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  scopes: ['openid', 'offline_access'],
  claims: { openid: ['sub'] },
  findAccount: async (ctx, accountId) => ({
    accountId,
    claims: async () => ({ sub: accountId }),
  }),
  routes: ROUTES,
  features: {
    // The stock login and consent pages: any login and password are accepted.
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    // --revocation 0: a server whose metadata names no revocation endpoint.
    revocation: { enabled: opts.revocation === 1 },
    introspection: { enabled: true },
    // For the machine client (cli-machine) only: no other client lists the grant.
    clientCredentials: { enabled: true },
  },
  // Rotate on every refresh, for confidential and public clients alike.
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: opts.accessTtl,
    RefreshToken: REFRESH_TTL,
    Grant: REFRESH_TTL,
    IdToken: 3600,
    AuthorizationCode: 60,
    Interaction: 600,
    DeviceCode: opts.deviceCodeTtl,
    Session: REFRESH_TTL,
  },
  // A fixed cookie key so that none is generated.
  cookies: { keys: ['credlock-e2e-not-a-secret'] },
});

// ---------------------------------------------------------------- stats

const stats = {
  client_credentials_requests: 0,
  client_credentials_ok: 0,
  refresh_ok: 0,
  refresh_invalid_grant: 0,
  refresh_other_error: 0,
  reuse_detected: 0,
  device_authorizations: 0,
  device_polls: 0,
  device_slow_down: 0,
  device_grants: 0,
  code_grants: 0,
};
const resetStats = () => { for (const k of Object.keys(stats)) stats[k] = 0; };

// Count token-endpoint responses to grant_type=refresh_token by the status and
// body actually sent (the route's error handler has run by the time next() returns).
provider.use(async (ctx, next) => {
  await next();
  if (ctx.method === 'POST' && ctx.path === ROUTES.device_authorization && ctx.status === 200) {
    stats.device_authorizations += 1;
    // oidc-provider sends no interval (RFC 8628's default is 5 s): advertise the configured one.
    ctx.body = { ...ctx.body, interval: opts.deviceInterval };
  }
  if (ctx.method !== 'POST' || ctx.path !== ROUTES.token) return;
  const gty = ctx.oidc?.params?.grant_type;
  if (gty === DEVICE_GRANT) stats.device_polls += 1;
  if (gty === DEVICE_GRANT && ctx.status === 200) stats.device_grants += 1;
  if (gty === 'authorization_code' && ctx.status === 200) stats.code_grants += 1;
  if (gty === 'client_credentials') {
    stats.client_credentials_requests += 1;
    if (ctx.status === 200) stats.client_credentials_ok += 1;
  }
  if (ctx.oidc?.params?.grant_type !== 'refresh_token') return;
  if (ctx.status === 200) stats.refresh_ok += 1;
  else if (ctx.status === 400 && ctx.body?.error === 'invalid_grant') stats.refresh_invalid_grant += 1;
  else stats.refresh_other_error += 1;
});

// Reuse of a consumed refresh token: refresh_token.js destroys it, revokes the
// grant and throws InvalidGrant('refresh token already used') (error_detail is
// not sent to the client; the body is the generic "grant request is invalid").
provider.on('grant.error', (ctx, err) => {
  if (err?.error_detail === 'refresh token already used') stats.reuse_detected += 1;
});
provider.on('server_error', (ctx, err) => {
  process.stderr.write(`oidc-server: server_error: ${err?.stack || err}\n`);
});

// ---------------------------------------------------------------- test routes

function isLoopback(addr) {
  if (!addr) return false;
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a === '::1' || a.startsWith('127.');
}

class HttpError extends Error {
  constructor(status, body) {
    super(body.error);
    this.status = status;
    this.body = body;
  }
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 65536) throw new HttpError(413, { error: 'body too large' });
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    const value = JSON.parse(text);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value;
  } catch { /* fall through */ }
  throw new HttpError(400, { error: 'body must be a JSON object' });
}

function tokenArg(body) {
  if (typeof body.token !== 'string' || body.token === '') {
    throw new HttpError(400, { error: '"token" (a refresh token) is required' });
  }
  return body.token;
}

async function revokeGrant(grantId) {
  await Promise.all([
    provider.AccessToken.revokeByGrantId(grantId),
    provider.RefreshToken.revokeByGrantId(grantId),
    provider.AuthorizationCode.revokeByGrantId(grantId),
    provider.Grant.adapter.destroy(grantId),
  ]);
}

const testRoutes = {
  'POST /test/seed': async (body) => {
    const clientId = body.client_id;
    if (typeof clientId !== 'string' || !CLIENT_IDS.has(clientId)) {
      throw new HttpError(400, { error: `"client_id" must be one of ${[...CLIENT_IDS].join(', ')}` });
    }
    const client = await provider.Client.find(clientId);
    const grant = new provider.Grant({ accountId: ACCOUNT_ID, clientId });
    grant.addOIDCScope(SCOPE);
    const grantId = await grant.save();
    const common = {
      accountId: ACCOUNT_ID,
      client,
      grantId,
      scope: SCOPE,
      gty: 'authorization_code',
      authTime: epochTime(),
    };
    const rt = new provider.RefreshToken({ ...common });
    const refreshToken = await rt.save();
    const at = new provider.AccessToken({ ...common });
    const accessToken = await at.save();
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: body.expired_access === true ? 0 : at.expiration,
      refresh_token: refreshToken,
      scope: SCOPE,
    };
  },
  'GET /test/stats': async () => ({ ...stats }),
  'POST /test/reset-stats': async () => { resetStats(); return { ...stats }; },
  'POST /test/introspect': async (body) => {
    const rt = await provider.RefreshToken.find(tokenArg(body));
    if (!rt || !rt.isValid) return { active: false };
    const grant = await provider.Grant.find(rt.grantId);
    return { active: !!grant && !grant.isExpired };
  },
  'POST /test/revoke-grant': async (body) => {
    const rt = await provider.RefreshToken.find(tokenArg(body), { ignoreExpiration: true });
    if (!rt?.grantId) throw new HttpError(404, { revoked: false, error: 'refresh token not found' });
    await revokeGrant(rt.grantId);
    return { revoked: true };
  },
};

async function handleTestRoute(req, res, pathname) {
  const send = (status, obj) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(obj));
  };
  if (!isLoopback(req.socket.remoteAddress)) {
    send(403, { error: 'test routes are loopback-only' });
    return;
  }
  const route = testRoutes[`${req.method} ${pathname}`];
  if (!route) {
    const known = Object.keys(testRoutes).some((k) => k.endsWith(` ${pathname}`));
    send(known ? 405 : 404, { error: known ? 'method not allowed' : 'no such test route' });
    return;
  }
  try {
    const body = req.method === 'POST' ? await readJson(req) : {};
    send(200, await route(body));
  } catch (err) {
    if (err instanceof HttpError) {
      send(err.status, err.body);
    } else {
      process.stderr.write(`oidc-server: ${req.method} ${pathname}: ${err?.stack || err}\n`);
      send(500, { error: String(err?.message || err) });
    }
  }
}

// slow_down (RFC 8628 §3.5), which oidc-provider does not implement: with
// --device-min-poll S, a device-code poll sooner than S seconds after the previous poll of
// the same code is answered 400 slow_down here, before oidc-provider sees it.
const lastPoll = new Map(); // device_code -> ms
async function deviceSlowDown(req, res) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  const params = new URLSearchParams(text);
  if (params.get('grant_type') === DEVICE_GRANT) {
    const code = params.get('device_code') || '';
    const now = Date.now();
    const previous = lastPoll.get(code);
    lastPoll.set(code, now);
    if (previous !== undefined && now - previous < opts.deviceMinPoll * 1000) {
      stats.device_polls += 1;
      stats.device_slow_down += 1;
      res.writeHead(400, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ error: 'slow_down', error_description: 'you are polling too quickly' }));
      return true;
    }
  }
  // The body is consumed: oidc-provider reads req.body instead (selective_body.js).
  req.body = text;
  return false;
}

// --require-nonce 1: Glewlwyd's rule, which oidc-provider does not have: an authorization
// request that asks for `openid` without a `nonce` is refused, even for response_type=code,
// with a redirect carrying error=invalid_request (the redirect URI is checked first by
// oidc-provider in a real refusal; here only registered clients' loopback URIs are used).
function nonceMissing(req, res) {
  const url = new URL(req.url || '/', issuer);
  const scope = (url.searchParams.get('scope') || '').split(' ');
  if (!scope.includes('openid') || url.searchParams.get('nonce')) return false;
  const back = new URL(url.searchParams.get('redirect_uri') || '');
  back.searchParams.set('error', 'invalid_request');
  back.searchParams.set('error_description', 'nonce required');
  const state = url.searchParams.get('state');
  if (state) back.searchParams.set('state', state);
  res.writeHead(302, { location: back.toString() });
  res.end();
  return true;
}

const providerCallback = provider.callback();
appHandler = (req, res) => {
  const pathname = (req.url || '/').split('?')[0];
  if (opts.requireNonce === 1 && req.method === 'GET' && pathname === '/auth' && nonceMissing(req, res)) {
    return;
  }
  if (pathname.startsWith('/test/')) {
    handleTestRoute(req, res, pathname);
  } else if (opts.deviceMinPoll > 0 && req.method === 'POST' && pathname === ROUTES.token) {
    deviceSlowDown(req, res).then((answered) => { if (!answered) providerCallback(req, res); });
  } else {
    providerCallback(req, res);
  }
};

process.stdout.write(`${JSON.stringify({
  ready: true,
  port,
  issuer,
  token_endpoint: `${issuer}${ROUTES.token}`,
  device_authorization_endpoint: `${issuer}${ROUTES.device_authorization}`,
  revocation_endpoint: opts.revocation === 1 ? `${issuer}${ROUTES.revocation}` : null,
  introspection_endpoint: `${issuer}${ROUTES.introspection}`,
})}\n`);
