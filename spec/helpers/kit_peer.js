// A small provider for the connector authoring kit's specs: the API a
// `junction connector new` scaffold calls (GET /me, GET /items, POST /items,
// GET /events), behind a bearer token. It echoes the credential back in
// /me, as a careless provider might, and puts a secret-shaped value in its
// answers, so that a recording must redact both.
//   node spec/helpers/kit_peer.js --token TOKEN   -> prints "LISTENING <port>"
'use strict';
const http = require('node:http');

const argv = process.argv.slice(2);
const token = argv[argv.indexOf('--token') + 1];
if (argv.indexOf('--token') < 0 || !token) {
  process.stderr.write('usage: kit_peer.js --token TOKEN\n');
  process.exit(2);
}

const ITEMS = [
  { id: 1, name: 'alice', mfa_enabled: true },
  { id: 2, name: 'bob', mfa_enabled: false },
  { id: 3, name: 'carol', mfa_enabled: true },
];

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      return send(res, 401, { message: 'bad credentials' });
    }
    if (req.method === 'GET' && url.pathname === '/me') {
      return send(res, 200, { account: 'acme', seen_authorization: req.headers.authorization,
        debug: 'session password=hunter2-kit-peer-secret' });
    }
    if (req.method === 'GET' && url.pathname === '/items') return send(res, 200, { items: ITEMS });
    if (req.method === 'POST' && url.pathname === '/items') {
      let params = {};
      try { params = JSON.parse(body || '{}'); } catch (e) { return send(res, 400, { message: 'bad json' }); }
      return send(res, 201, { id: ITEMS.length + 1, ...params });
    }
    if (req.method === 'GET' && url.pathname === '/events') {
      const after = Number(url.searchParams.get('after') || 0);
      return send(res, 200, { events: [{ id: after + 1, type: 'item.updated' }], next: String(after + 1) });
    }
    return send(res, 404, { message: 'not found' });
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
