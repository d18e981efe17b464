#!/usr/bin/env node
'use strict';
// Junction provider simulator: reproduces a provider's documented REST wire
// behaviour (GitHub for now) over plain HTTP, with a deterministic data set,
// per-token rate limits, fault injection and request statistics.
//
// Only Node.js built-ins are used, so it runs without an install step.
// See README.md next to this file for usage.

const http = require('node:http');
const { createGithubProvider } = require('./providers/github');
const { createAwsProvider } = require('./providers/aws');
const { createOktaProvider } = require('./providers/okta');
const { FaultRegistry, MODES, adhocFault, runFault } = require('./lib/faults');
const { Stats } = require('./lib/stats');

const USAGE = `usage: node tools/simulator/server.js [options]

  --port N                 listen port, 0 = ephemeral (default 0)
  --host ADDR              listen address (default 127.0.0.1)
  --seed N                 data set seed (default 1)
  --orgs a,b               organizations to generate (default acme)
  --members N              members per organization (default 2500)
  --repos N                repositories per organization (default 1200)
  --token T                accepted token; repeat or comma-separate (default sim-token)
  --rate-limit N           primary rate limit per token per hour (default 5000)
  --rate-limit-status N    status when the primary limit is exhausted: 403 or 429 (default 403)
  --latency-ms N           added delay before every API response (default 0)
  --huge-bytes N           size of "huge" fault bodies (default 67108864)
  --secondary-concurrency N  answer with a secondary rate limit when more than N
                           API requests are in flight (default 0 = off)
  --app-key-file PEM       public key that verifies GitHub App JWTs (RS256) for
                           POST /app/installations/{id}/access_tokens
  --app-id ID              the app id the JWT's iss must name (default: any)
  --installation-token-ttl N  lifetime of installation tokens in seconds (default 3600)
  --client-id ID           OAuth client for POST /oauth/token (client_credentials)
  --client-token-ttl N     expires_in of the access tokens POST /oauth/token hands
                           out, in seconds; enforced (default 3600; 3599 for
                           Google-style JWT bearer tokens)
  --client-secret S        its secret (client_secret_basic)
  --client-key-file PEM    public key that verifies its private_key_jwt assertions
  --client-key-id KID      the kid those assertions must name (default: any or none)
  --refresh-token T        initial refresh token for grant_type=refresh_token at
                           POST /oauth/token; each refresh rotates it
  --bearer-key-file PEM    public key that verifies JWT bearer assertions (RFC 7523,
                           grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer) at
                           POST /oauth/token
  --bearer-audience URL    the aud of Salesforce-style assertions (Google-style ones,
                           with a scope claim, name the token URL)
  --bearer-issuer A,B      accepted iss values (default: any)
  --sts-access-key-id ID   base access key id accepted by STS at POST /sts/
  --sts-secret-access-key S  its secret key (verifies the AssumeRole SigV4 signature)
  --sts-session-token T    its session token, when the base keys are temporary
  --sts-role-arn ARN       the role AssumeRole may assume
  --sts-external-id ID     the ExternalId the role's trust policy requires (default: none)
  --sts-max-session-duration N  the role's MaxSessionDuration in seconds (default 3600)
  --sts-credential-ttl N   lifetime of temporary keys in seconds, overriding
                           DurationSeconds (tests of expiry; default: DurationSeconds)
  --aws-region R           the region requests must be signed for (default us-east-1)
  --aws-service S          the service GET /aws/iam/users must be signed for (default iam)
  --okta-events N          Okta System Log events written at start (default 0)
  --okta-events-per-s N    Okta System Log events appended per second (default 0)
  --okta-rate-limit N      Okta requests per token and minute (default 1200)
  --plain-links            Link headers use /orgs/{org}/... instead of GitHub's
                           /organizations/{id}/... form
  --exit-on-stdin-close    exit when stdin reaches end of file
  --verbose                log requests to stderr
  --help                   print this text

Prints "LISTENING <port>" on stdout once ready and nothing else.`;

function fail(msg) {
  process.stderr.write(`simulator: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    port: 0,
    host: '127.0.0.1',
    seed: 1,
    orgs: ['acme'],
    members: 2500,
    repos: 1200,
    tokens: [],
    rateLimit: 5000,
    rateLimitStatus: 403,
    latencyMs: 0,
    hugeBytes: 64 * 1024 * 1024,
    secondaryConcurrency: 0,
    plainLinks: false,
    exitOnStdinClose: false,
    verbose: false,
    provider: 'github',
  };
  const ints = {
    '--port': 'port',
    '--seed': 'seed',
    '--members': 'members',
    '--repos': 'repos',
    '--rate-limit': 'rateLimit',
    '--rate-limit-status': 'rateLimitStatus',
    '--latency-ms': 'latencyMs',
    '--huge-bytes': 'hugeBytes',
    '--secondary-concurrency': 'secondaryConcurrency',
    '--installation-token-ttl': 'installationTokenTtl',
    '--client-token-ttl': 'clientTokenTtl',
    '--sts-max-session-duration': 'stsMaxSessionDuration',
    '--sts-credential-ttl': 'stsCredentialTtl',
    '--okta-events': 'oktaEvents',
    '--okta-events-per-s': 'oktaEventsPerSecond',
    '--okta-rate-limit': 'oktaRateLimit',
  };
  const strings = {
    '--app-key-file': 'appKeyFile',
    '--app-id': 'appId',
    '--client-id': 'clientId',
    '--client-secret': 'clientSecret',
    '--client-key-file': 'clientKeyFile',
    '--client-key-id': 'clientKeyId',
    '--refresh-token': 'refreshToken',
    '--bearer-key-file': 'bearerKeyFile',
    '--bearer-audience': 'bearerAudience',
    '--bearer-issuer': 'bearerIssuer',
    '--sts-access-key-id': 'stsAccessKeyId',
    '--sts-secret-access-key': 'stsSecretAccessKey',
    '--sts-session-token': 'stsSessionToken',
    '--sts-role-arn': 'stsRoleArn',
    '--sts-external-id': 'stsExternalId',
    '--aws-region': 'awsRegion',
    '--aws-service': 'awsService',
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let val;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      val = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const takeValue = () => {
      if (val !== undefined) return val;
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg in ints) {
      const v = takeValue();
      if (!/^\d+$/.test(v)) fail(`${arg} expects a non-negative integer, got ${JSON.stringify(v)}`);
      o[ints[arg]] = parseInt(v, 10);
    } else if (arg in strings) o[strings[arg]] = takeValue();
    else if (arg === '--host') o.host = takeValue();
    else if (arg === '--orgs') {
      o.orgs = takeValue().split(',').map((s) => s.trim()).filter(Boolean);
      if (!o.orgs.length) fail('--orgs needs at least one name');
      for (const name of o.orgs) if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/.test(name)) fail(`invalid organization name ${JSON.stringify(name)}`);
    } else if (arg === '--token') o.tokens.push(...takeValue().split(',').map((s) => s.trim()).filter(Boolean));
    else if (arg === '--provider') o.provider = takeValue();
    else if (arg === '--plain-links') o.plainLinks = true;
    else if (arg === '--exit-on-stdin-close') o.exitOnStdinClose = true;
    else if (arg === '--verbose') o.verbose = true;
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else fail(`unknown argument ${JSON.stringify(arg)}`);
  }
  if (!o.tokens.length) o.tokens = ['sim-token'];
  if (o.port > 65535) fail('--port out of range');
  if (o.rateLimitStatus !== 403 && o.rateLimitStatus !== 429) fail('--rate-limit-status must be 403 or 429');
  if (o.provider !== 'github') fail(`unknown provider ${JSON.stringify(o.provider)} (available: github)`);
  if ((o.stsAccessKeyId === undefined) !== (o.stsSecretAccessKey === undefined)) fail('--sts-access-key-id and --sts-secret-access-key go together');
  if (o.stsCredentialTtl === 0) fail('--sts-credential-ttl must be positive');
  if (o.clientTokenTtl === 0) fail('--client-token-ttl must be positive');
  return o;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const provider = createGithubProvider(opts);
  const aws = createAwsProvider(opts);
  const okta = createOktaProvider(opts);
  const faults = new FaultRegistry();
  const stats = new Stats();
  const log = opts.verbose ? (s) => process.stderr.write(`${s}\n`) : null;

  function sendControl(res, status, obj) {
    const body = Buffer.from(JSON.stringify(obj, null, 2) + '\n');
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
    res.end(body);
  }

  function readJson(req, cb) {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1024 * 1024) {
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (!text) return cb(null, {});
      try {
        cb(null, JSON.parse(text));
      } catch (e) {
        cb(new Error(`invalid JSON body: ${e.message}`));
      }
    });
  }

  // ---- control API (/_sim/*): no auth, never counted, never faulted
  function control(req, res, pathname) {
    const m = req.method;
    if (pathname === '/_sim/health' && m === 'GET') return sendControl(res, 200, { ok: true, provider: provider.name });
    if (pathname === '/_sim/stats' && m === 'GET') {
      return sendControl(res, 200, { ...stats.toJSON(), exchanges: { ...provider.exchangeStats(), ...aws.exchangeStats() }, tokens: provider.tokenStats(), aws: aws.stats(), okta: okta.stats() });
    }
    if (pathname === '/_sim/arrivals' && m === 'GET') return sendControl(res, 200, stats.arrivalsJSON());
    if (pathname === '/_sim/dataset' && m === 'GET') return sendControl(res, 200, provider.summary());
    if (pathname === '/_sim/reset' && m === 'POST') {
      stats.reset();
      provider.resetBudgets();
      provider.resetExchanges();
      aws.reset();
      okta.reset();
      if (provider.resetRefreshToken) provider.resetRefreshToken();
      return sendControl(res, 200, { ok: true });
    }
    if (pathname === '/_sim/okta/events') {
      if (m === 'GET') return sendControl(res, 200, { count: okta.count(), uuids: okta.uuids() });
      if (m === 'POST') {
        return readJson(req, (err, body) => {
          const n = body && body.count;
          if (err || !Number.isInteger(n) || n < 0 || n > 100000) {
            return sendControl(res, 400, { error: err ? err.message : 'count must be an integer from 0 to 100000' });
          }
          return sendControl(res, 201, { appended: okta.append(n), count: okta.count() });
        });
      }
    }
    if (pathname === '/_sim/revoke_exchanged' && m === 'POST') return sendControl(res, 200, { revoked: provider.revokeExchanged() + aws.revoke() });
    if (pathname === '/_sim/expire_exchanged' && m === 'POST') return sendControl(res, 200, { expired: provider.expireExchanged() });
    if (pathname === '/_sim/token_ttl' && m === 'POST') {
      return readJson(req, (err, body) => {
        if (err) return sendControl(res, 400, { error: err.message });
        try {
          return sendControl(res, 200, provider.setTokenTtl(body && body.seconds !== undefined ? body.seconds : null));
        } catch (e) {
          return sendControl(res, 400, { error: e.message });
        }
      });
    }
    if (pathname === '/_sim/faults') {
      if (m === 'GET') return sendControl(res, 200, { modes: MODES, faults: faults.list() });
      if (m === 'DELETE') return sendControl(res, 200, { cleared: faults.clear() });
      if (m === 'POST') {
        return readJson(req, (err, body) => {
          if (err) return sendControl(res, 400, { error: err.message });
          try {
            const added = Array.isArray(body) ? body.map((s) => faults.add(s)) : faults.add(body);
            return sendControl(res, 201, added);
          } catch (e) {
            return sendControl(res, 400, { error: e.message });
          }
        });
      }
    }
    const fm = /^\/_sim\/faults\/(\d+)$/.exec(pathname);
    if (fm && m === 'DELETE') {
      return faults.remove(parseInt(fm[1], 10)) ? sendControl(res, 200, { ok: true }) : sendControl(res, 404, { error: 'no such fault' });
    }
    if (pathname === '/_sim/rate_limit' && m === 'POST') {
      return readJson(req, (err, body) => {
        if (err) return sendControl(res, 400, { error: err.message });
        try {
          return sendControl(res, 200, provider.setBudget(body || {}));
        } catch (e) {
          return sendControl(res, 400, { error: e.message });
        }
      });
    }
    return sendControl(res, 404, { error: `no control endpoint ${m} ${pathname}` });
  }

  function onStatus(code) {
    stats.status(code);
  }

  function serve(req, res, info, fault) {
    if (res.destroyed) return;
    if (fault) {
      runFault(fault, req, res, { provider, info, hugeBytes: opts.hugeBytes, onStatus });
      return;
    }
    const r = provider.respond(req, info);
    stats.status(r.status);
    res.writeHead(r.status, r.headers);
    res.end(r.body);
  }

  function handler(req, res) {
    const url = req.url;
    const qi = url.indexOf('?');
    const pathname = qi < 0 ? url : url.slice(0, qi);
    const search = qi < 0 ? '' : url.slice(qi + 1);
    if (pathname.startsWith('/_sim/')) return control(req, res, pathname);

    const method = req.method;
    const awsKind = aws.route(method, pathname);
    if (awsKind) {
      // STS and the AWS API route read a body (it is signed) and can be faulted too.
      const afault = faults.active ? faults.match(method, pathname, pathname, search, null) : null;
      if (afault) {
        stats.fault(afault.mode);
        const info = { method, pathname, search, consume: false };
        return runFault(afault, req, res, { provider, info, hugeBytes: opts.hugeBytes, onStatus });
      }
      const chunks = [];
      let size = 0;
      req.on('data', (c) => {
        size += c.length;
        if (size > 1024 * 1024) req.destroy();
        else chunks.push(c);
      });
      req.on('end', () => {
        const r = aws.handle(awsKind, req, pathname, search, Buffer.concat(chunks));
        stats.status(r.status);
        if (log) log(`${method} ${pathname} ${r.status}`);
        res.writeHead(r.status, r.headers);
        res.end(r.body);
      });
      return undefined;
    }
    if (okta.route(method, pathname)) {
      // Okta's System Log: counted, faulted and rate-limited like the other API routes
      const tokenKey = okta.tokenKey(req);
      stats.request(pathname, `${method} /api/v1/logs`, tokenKey);
      stats.begin();
      res.on('close', () => stats.end());
      let ofault = search.includes('_sim_fault=') ? adhocFault(search) : null;
      if (!ofault && faults.active) ofault = faults.match(method, pathname, pathname, search, tokenKey);
      const info = { method, pathname, search, consume: !ofault };
      if (ofault) stats.fault(ofault.mode);
      const answer = () => {
        if (ofault) return runFault(ofault, req, res, { provider: okta, info, hugeBytes: opts.hugeBytes, onStatus });
        const r = okta.respond(req, info);
        stats.status(r.status);
        if (log) log(`${method} ${url} ${r.status}`);
        res.writeHead(r.status, r.headers);
        return res.end(r.body);
      };
      if (opts.latencyMs > 0 && !(ofault && (ofault.mode === 'hang' || ofault.mode === 'reset'))) setTimeout(answer, opts.latencyMs);
      else answer();
      return undefined;
    }
    const which = provider.exchangePath(method, pathname);
    if (which) {
      // Token exchanges can be faulted too (e.g. an authorization server that hangs).
      const xfault = faults.active ? faults.match(method, pathname, pathname, search, null) : null;
      if (xfault) {
        stats.fault(xfault.mode);
        const info = { method, pathname, search, consume: false };
        return runFault(xfault, req, res, { provider, info, hugeBytes: opts.hugeBytes, onStatus });
      }
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const r = provider.exchange(req, which, Buffer.concat(chunks).toString('utf8'));
        stats.status(r.status);
        if (log) log(`${method} ${pathname} ${r.status}`);
        res.writeHead(r.status, r.headers);
        res.end(r.body);
      });
      return undefined;
    }
    const d = provider.describe(method, pathname);
    const tokenKey = provider.tokenKey(req);
    stats.request(pathname, d.route, tokenKey);
    stats.begin();
    let ended = false;
    res.on('close', () => {
      if (!ended) {
        ended = true;
        stats.end();
      }
    });
    if (log) {
      const t0 = process.hrtime.bigint();
      res.on('close', () => {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        log(`${method} ${url} ${res.headersSent ? res.statusCode : '-'} ${ms.toFixed(1)}ms token=${tokenKey}`);
      });
    }

    let fault = null;
    if (search.includes('_sim_fault=')) fault = adhocFault(search);
    if (!fault && faults.active) fault = faults.match(method, pathname, d.canonical, search, tokenKey);
    if (!fault && opts.secondaryConcurrency > 0 && stats.inFlight > opts.secondaryConcurrency) {
      fault = { id: 0, mode: 'secondary_rate_limit' };
    }
    if (fault) stats.fault(fault.mode);

    const info = { method, pathname, search, consume: true };
    if (opts.latencyMs > 0 && !(fault && (fault.mode === 'hang' || fault.mode === 'reset'))) {
      setTimeout(serve, opts.latencyMs, req, res, info, fault);
    } else {
      serve(req, res, info, fault);
    }
  }

  const server = http.createServer({ noDelay: true, requestTimeout: 0 }, (req, res) => {
    try {
      handler(req, res);
    } catch (e) {
      process.stderr.write(`simulator: internal error on ${req.method} ${req.url}: ${e.stack || e}\n`);
      if (!res.headersSent) {
        const body = Buffer.from(JSON.stringify({ message: 'Simulator internal error' }));
        res.writeHead(500, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
        res.end(body);
      } else {
        res.destroy();
      }
    }
  });
  server.keepAliveTimeout = 65000;
  server.headersTimeout = 66000;
  server.maxRequestsPerSocket = 0;

  let closing = false;
  function shutdown() {
    if (closing) return;
    closing = true;
    okta.close();
    server.close();
    server.closeAllConnections();
    setImmediate(() => process.exit(0));
  }
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdout.on('error', () => {});
  if (opts.exitOnStdinClose) {
    process.stdin.on('end', shutdown);
    process.stdin.on('close', shutdown);
    process.stdin.on('error', shutdown);
    process.stdin.resume();
  }

  server.on('error', (e) => {
    process.stderr.write(`simulator: ${e.message}\n`);
    process.exit(1);
  });
  server.listen({ port: opts.port, host: opts.host, backlog: 4096 }, () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`);
  });
}

main();
