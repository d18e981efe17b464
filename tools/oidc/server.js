// A real OpenID Connect / OAuth 2.0 authorization server (the npm package
// oidc-provider) for the specs: the runtime's token exchanges are tested
// against it as well as against the project's own simulator.
//
//   node tools/oidc/server.js --config clients.json
//
// clients.json: { "clients": [ oidc-provider client metadata, ... ] }
// A client may name "jwks_pem": a PEM public key file, turned into its "jwks"
// (for private_key_jwt). Refresh-token rotation is on (rotateRefreshToken).
//
// Listens on 127.0.0.1, on a free port. Prints `LISTENING <port>`; exits when
// stdin closes.
//
// The authorization endpoint (/auth) is the real one: PKCE is required of
// every client (S256 only). Its user interaction is a test user's browser
// that approves at once: /interaction/<uid> logs in the account named by the
// request's login_hint (default "alice") and grants the scopes the client
// asked for; login_hint=decline makes the user refuse (access_denied).
//
// Test-only routes (outside the provider):
//   GET  /_test/whoami             Authorization: Bearer <access token>: 200
//                                  { client_id, account, kind } or 401
//   POST /_test/refresh_token?client_id=..&account=..&scope=..&ttl=..   mints a
//                                  refresh token server-side (no browser), valid
//                                  for ttl seconds (default: the provider's):
//                                  { refresh_token }
//   GET  /_test/token_requests     { count } of POST /token requests so far (for
//                                  the specs' checks that a refused credential
//                                  is not presented again)
//   GET  /_test/refresh_token_state?token=..   { found, consumed } of a refresh token
//   GET  /_test/issued?client_id=..  { authorization_codes, access_tokens,
//                                  refresh_tokens } issued to the client (for
//                                  the specs' checks that none leaked)
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const { json, listen, serve, ready, run } = require('./http_peer');

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--config') {
      out.config = argv[(i += 1)];
    } else {
      throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!out.config) throw new Error('--config FILE is required');
  return out;
}

function loadClients(conf) {
  return (conf.clients || []).map((c) => {
    const client = { ...c };
    // An encoder without empty arrays (Lua's cjson) writes {}: read it as [].
    for (const [k, v] of Object.entries(client)) {
      if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) client[k] = [];
    }
    if (client.jwks_pem) {
      const jwk = crypto.createPublicKey(fs.readFileSync(client.jwks_pem)).export({ format: 'jwk' });
      client.jwks = { keys: [{ ...jwk, use: 'sig', alg: 'RS256' }] };
      delete client.jwks_pem;
    }
    return client;
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const conf = JSON.parse(fs.readFileSync(args.config, 'utf8'));
  const { default: Provider } = await import('oidc-provider');

  const { server, port } = await listen();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: loadClients(conf),
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      devInteractions: { enabled: false },
    },
    scopes: ['openid', 'offline_access', 'read', 'write'],
    pkce: { methods: ['S256'], required: () => true },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    rotateRefreshToken: true,
    ttl: { AccessToken: 3600, ClientCredentials: 3600, RefreshToken: 86400, Grant: 86400 },
    // The server runs on http://127.0.0.1 only; no cookies are used.
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  });
  provider.on('server_error', (ctx, err) => { process.stderr.write(`server_error: ${err.stack}\n`); });

  // What the provider issued, per client.
  const issued = new Map();
  const record = (kind) => (token) => {
    if (!issued.has(token.clientId)) {
      issued.set(token.clientId, { authorization_codes: [], access_tokens: [], refresh_tokens: [] });
    }
    issued.get(token.clientId)[kind].push(token.jti);
  };
  provider.on('authorization_code.saved', record('authorization_codes'));
  provider.on('access_token.saved', record('access_tokens'));
  provider.on('refresh_token.saved', record('refresh_tokens'));

  // The test user: logs in and consents at once, or declines.
  async function interaction(req, res) {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session } = details;
    let result;
    if (params.login_hint === 'decline') {
      result = { error: 'access_denied', error_description: 'the test user declined' };
    } else if (prompt.name === 'login') {
      result = { login: { accountId: params.login_hint || 'alice' } };
    } else if (prompt.name === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      return json(res, 500, { error: 'server_error', error_description: `prompt ${prompt.name}` });
    }
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }

  async function mintRefreshToken(clientId, accountId, scope, ttl) {
    const client = await provider.Client.find(clientId);
    if (!client) throw new Error(`no client ${clientId}`);
    const grant = new provider.Grant({ clientId, accountId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({
      accountId, client, grantId, gty: 'authorization_code', scope,
      ...(ttl ? { expiresIn: ttl } : {}),
    });
    return rt.save();
  }

  async function whoami(req, res) {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization || '');
    if (!m) return json(res, 401, { error: 'invalid_token', error_description: 'no Bearer token' });
    const at = await provider.AccessToken.find(m[1]);
    if (at) return json(res, 200, { kind: 'AccessToken', client_id: at.clientId, account: at.accountId });
    const cc = await provider.ClientCredentials.find(m[1]);
    if (cc) return json(res, 200, { kind: 'ClientCredentials', client_id: cc.clientId });
    return json(res, 401, { error: 'invalid_token', error_description: 'token not found' });
  }

  const callback = provider.callback();
  let tokenRequests = 0;
  serve(server, issuer, async (req, res, url) => {
    // counted as it arrives, before the provider answers it
    if (url.pathname === '/token' && req.method === 'POST') tokenRequests += 1;
    if (url.pathname === '/_test/token_requests') return json(res, 200, { count: tokenRequests });
    if (url.pathname === '/_test/whoami') return whoami(req, res);
    if (url.pathname.startsWith('/interaction/') && req.method === 'GET') return interaction(req, res);
    if (url.pathname === '/_test/issued') {
      return json(res, 200, issued.get(url.searchParams.get('client_id'))
        || { authorization_codes: [], access_tokens: [], refresh_tokens: [] });
    }
    if (url.pathname === '/_test/refresh_token' && req.method === 'POST') {
      const q = url.searchParams;
      const ttl = q.get('ttl') ? Number(q.get('ttl')) : undefined;
      if (ttl !== undefined && !(Number.isInteger(ttl) && ttl > 0)) {
        return json(res, 400, { error: 'invalid_request', error_description: 'ttl must be a positive integer' });
      }
      const token = await mintRefreshToken(q.get('client_id'), q.get('account') || 'alice',
        q.get('scope') || 'openid offline_access', ttl);
      return json(res, 200, { refresh_token: token });
    }
    if (url.pathname === '/_test/refresh_token_state') {
      const rt = await provider.RefreshToken.find(url.searchParams.get('token') || '', { ignoreExpiration: true });
      return json(res, 200, { found: !!rt, consumed: !!(rt && rt.consumed) });
    }
    return callback(req, res);
  });

  ready(port);
}

run(main);
