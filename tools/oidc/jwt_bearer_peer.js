// A JWT bearer (RFC 7523) token endpoint whose assertion checks are done by
// an independent JOSE implementation (the npm package jose), for the specs:
// the assertions Junction signs for Google service accounts and Salesforce
// are verified here for signature (RS256), issuer, audience and expiry by
// code that shares nothing with Junction's.
//
//   node tools/oidc/jwt_bearer_peer.js --config issuers.json
//
// issuers.json: { "issuers": [ { "iss": "...", "public_key": "PEM file",
//   "audience": "URL" | "token_url", "max_lifetime": seconds,
//   "salesforce": true|false } ] }
// "token_url" as audience means this endpoint's own URL (Google's rule);
// max_lifetime bounds exp - iat (Google: 3600). A Salesforce issuer's answer
// has instance_url and no expires_in, as Salesforce's does.
//
// Listens on 127.0.0.1, on a free port. Prints `LISTENING <port>`; exits when
// stdin closes.
//
//   POST /token                    grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
//                                  &assertion=...: 200 { access_token, ... }, or
//                                  400 { error: "invalid_grant", error_description:
//                                  jose's error code and message }
//   GET  /_test/whoami             Authorization: Bearer <access token>: 200 the
//                                  verified claims { iss, sub, aud, scope } or 401
//   GET  /_test/reverify?at=EPOCH  verifies the last accepted assertion again as
//                                  if the time were EPOCH seconds: { ok, code }
//   GET  /_test/stats              { exchanges, refused }
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const jose = require('jose');
const { json, readBody, listen, serve, ready, run } = require('./http_peer');

const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

function parseArgs(argv) {
  if (argv.length !== 2 || argv[0] !== '--config') throw new Error('usage: jwt_bearer_peer.js --config FILE');
  return { config: argv[1] };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const conf = JSON.parse(fs.readFileSync(args.config, 'utf8'));
  const issuers = new Map();
  for (const i of conf.issuers || []) {
    issuers.set(i.iss, { ...i, key: crypto.createPublicKey(fs.readFileSync(i.public_key)) });
  }
  const tokens = new Map(); // access token -> verified claims
  const stats = { exchanges: 0, refused: 0 };
  let last = null; // { assertion, options } of the last accepted assertion

  const { server, port } = await listen();
  const tokenUrl = `http://127.0.0.1:${port}/token`;

  function options(issuer) {
    return {
      issuer: issuer.iss,
      audience: issuer.audience === 'token_url' ? tokenUrl : issuer.audience,
      algorithms: ['RS256'],
      requiredClaims: ['exp'],
    };
  }

  async function token(req, res) {
    const form = new URLSearchParams(await readBody(req));
    const refuse = (description) => {
      stats.refused += 1;
      return json(res, 400, { error: 'invalid_grant', error_description: description });
    };
    if (form.get('grant_type') !== GRANT) return refuse(`grant_type must be ${GRANT}`);
    const assertion = form.get('assertion') || '';
    let claims;
    try {
      claims = jose.decodeJwt(assertion);
    } catch (e) {
      return refuse(`${e.code}: ${e.message}`);
    }
    const issuer = issuers.get(claims.iss);
    if (!issuer) return refuse('unknown issuer');
    let verified;
    try {
      verified = (await jose.jwtVerify(assertion, issuer.key, options(issuer))).payload;
    } catch (e) {
      return refuse(`${e.code}: ${e.message}`);
    }
    if (issuer.max_lifetime !== undefined) {
      if (typeof verified.iat !== 'number') return refuse('iat is missing');
      if (verified.exp - verified.iat > issuer.max_lifetime) return refuse('exp is too far after iat');
    }
    stats.exchanges += 1;
    last = { assertion, issuer };
    const access = `jp_at_${crypto.randomBytes(18).toString('hex')}`;
    tokens.set(access, { iss: verified.iss, sub: verified.sub ?? null, aud: verified.aud, scope: verified.scope ?? null });
    if (issuer.salesforce) {
      return json(res, 200, { access_token: access, token_type: 'Bearer', instance_url: `http://127.0.0.1:${port}` });
    }
    return json(res, 200, { access_token: access, token_type: 'Bearer', expires_in: 3600 });
  }

  async function reverify(url, res) {
    if (!last) return json(res, 404, { error: 'no assertion accepted yet' });
    const at = Number(url.searchParams.get('at'));
    if (!Number.isInteger(at)) return json(res, 400, { error: 'at must be epoch seconds' });
    try {
      await jose.jwtVerify(last.assertion, last.issuer.key, { ...options(last.issuer), currentDate: new Date(at * 1000) });
      return json(res, 200, { ok: true, code: null });
    } catch (e) {
      return json(res, 200, { ok: false, code: e.code });
    }
  }

  serve(server, `http://127.0.0.1:${port}`, async (req, res, url) => {
    if (url.pathname === '/token' && req.method === 'POST') return token(req, res);
    if (url.pathname === '/_test/whoami') {
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization || '');
      const who = m && tokens.get(m[1]);
      return who ? json(res, 200, who) : json(res, 401, { error: 'invalid_token' });
    }
    if (url.pathname === '/_test/reverify') return reverify(url, res);
    if (url.pathname === '/_test/stats') return json(res, 200, stats);
    return json(res, 404, { error: 'not found' });
  });

  ready(port);
}

run(main);
