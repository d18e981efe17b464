// A small HTTP peer for the Lua API specs: serves one list of 95 items in
// each pagination style providers use, plus an echo endpoint that reports
// what it received (so specs can check what the core sent), and
// /echo_status?code=N: a provider error (status N) that echoes the request's
// URL, query, headers and body in its body and headers.
//   node spec/helpers/paging_peer.js   -> prints "LISTENING <port>"
'use strict';
const http = require('node:http');

const ITEMS = Array.from({ length: 95 }, (_, i) => ({ id: i + 1, name: `item-${i + 1}` }));

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

function handle(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  const q = url.searchParams;
  const base = `http://${req.headers.host}`;
  switch (url.pathname) {
    case '/link': {
      const page = Number(q.get('page') || 1), per = Number(q.get('per_page') || 10);
      const items = ITEMS.slice((page - 1) * per, page * per);
      const last = Math.ceil(ITEMS.length / per);
      const links = [];
      if (page < last) links.push(`<${base}/link?page=${page + 1}&per_page=${per}>; rel="next"`);
      links.push(`<${base}/link?page=${last}&per_page=${per}>; rel="last"`);
      return send(res, 200, items, { link: links.join(', ') });
    }
    case '/cursor': { // Slack style
      const start = Number(q.get('cursor') || 0), limit = Number(q.get('limit') || 10);
      const items = ITEMS.slice(start, start + limit);
      const next = start + limit < ITEMS.length ? String(start + limit) : '';
      return send(res, 200, { ok: true, members: items, response_metadata: { next_cursor: next } });
    }
    case '/offset': { // Jira style
      const startAt = Number(q.get('startAt') || 0), max = Number(q.get('maxResults') || 10);
      return send(res, 200, { startAt, maxResults: max, total: ITEMS.length,
        values: ITEMS.slice(startAt, startAt + max) });
    }
    case '/token': { // Google style
      const start = Number(q.get('pageToken') || 0);
      const items = ITEMS.slice(start, start + 10);
      const body = { items };
      if (start + 10 < ITEMS.length) body.nextPageToken = String(start + 10);
      return send(res, 200, body);
    }
    case '/nexturl': { // Microsoft Graph style
      const skip = Number(q.get('skip') || 0);
      const body = { value: ITEMS.slice(skip, skip + 10) };
      if (skip + 10 < ITEMS.length) body['@odata.nextLink'] = `${base}/nexturl?skip=${skip + 10}`;
      return send(res, 200, body);
    }
    case '/echo': {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => send(res, 200, { method: req.method, path: url.pathname,
        query: Object.fromEntries(q), headers: req.headers, body }));
      return undefined;
    }
    case '/echo_status': { // a provider error that echoes the request back
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        const code = Number(q.get('code') || 400);
        const echo = { error: `request refused (${code})`, method: req.method, url: req.url,
          query: Object.fromEntries(q), headers: req.headers, body };
        // ... in the response headers too, as some gateways do
        send(res, code, echo, { 'x-echo-authorization': req.headers.authorization || '',
          'x-echo-url': req.url });
      });
      return undefined;
    }
    case '/redirect': // to another origin: credentials must be dropped
      res.writeHead(302, { location: q.get('to') });
      return res.end();
    case '/status':
      return send(res, Number(q.get('code') || 500), { message: 'status ' + q.get('code') });
    case '/badjson':
      return send(res, 200, '{"truncated": [1, 2');
    case '/big': {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = '"' + 'x'.repeat(65536) + '",';
      let n = Number(q.get('mb') || 64) * 16;
      res.write('[');
      const pump = () => {
        while (n-- > 0) { if (!res.write(chunk)) return res.once('drain', pump); }
        res.end('""]');
        return undefined;
      };
      return pump();
    }
    case '/slow':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('[');
      return setTimeout(() => res.end('1]'), Number(q.get('ms') || 5000));
    default:
      return send(res, 404, { message: 'Not Found' });
  }
}

const server = http.createServer(handle);
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
