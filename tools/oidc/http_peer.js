// What the token-endpoint test peers in this folder (server.js,
// jwt_bearer_peer.js) share: JSON answers, a bounded request body, a server
// on a free port of 127.0.0.1, and the contract of spec/helpers/peer.lua
// (print `LISTENING <port>` once connections are accepted, exit when stdin
// closes, so a spec run that dies never leaves a peer behind).
'use strict';

const http = require('node:http');

const BODY_LIMIT = 65536;

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// The request body as text; refused past BODY_LIMIT bytes (a peer answers
// specs, not arbitrary clients, but must not grow without bound).
function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > BODY_LIMIT) reject(new Error('body too large'));
      else parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

// An HTTP server listening on 127.0.0.1, on a free port: { server, port }.
async function listen() {
  const server = http.createServer();
  await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
  return { server, port: server.address().port };
}

// Serves every request with route(req, res, url), an async function; url is
// the request's URL resolved against base. A route that throws answers 500
// (when it has not answered yet) and leaves its stack on stderr, where the
// spec's start-up error or a failing assertion shows it.
function serve(server, base, route) {
  server.on('request', (req, res) => {
    const url = new URL(req.url, base);
    route(req, res, url).catch((err) => {
      process.stderr.write(`${err.stack}\n`);
      if (!res.headersSent) json(res, 500, { error: 'server_error' });
    });
  });
}

// Tells the spec the port, and exits when the spec closes our stdin.
function ready(port) {
  process.stdout.write(`LISTENING ${port}\n`);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

// Runs the peer's async main; a failure to start exits 1 with the stack.
function run(main) {
  main().catch((err) => {
    process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  });
}

module.exports = { json, readBody, listen, serve, ready, run };
