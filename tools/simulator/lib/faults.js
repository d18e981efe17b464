'use strict';
// Fault injection: a registry of armed faults (POST /_sim/faults) and the code
// that produces each faulty response. Faults never consume rate-limit budget.

const MODES = [
  'secondary_rate_limit', // 403 + retry-after + GitHub's secondary-limit message
  'rate_limit_429', // 429 + retry-after
  'server_error', // 502 (or `status`)
  'bad_json', // 200 whose body is not valid JSON
  'truncated', // Content-Length larger than what is sent, then the socket is destroyed
  'huge', // 200 with a valid JSON array streamed up to `bytes` (default --huge-bytes)
  'slow', // the real response, body dripped one byte every `interval_ms` (default 200)
  'hang', // never answer
  'reset', // destroy the socket immediately
];
const MODE_SET = new Set(MODES);

class FaultRegistry {
  constructor() {
    this.faults = [];
    this.nextId = 1;
  }

  get active() {
    return this.faults.length > 0;
  }

  // spec: {mode, path_prefix?, count?, after?, method?, token?, query?, retry_after?, status?, bytes?, interval_ms?}
  add(spec) {
    if (!spec || typeof spec !== 'object') throw new Error('fault must be a JSON object');
    if (!MODE_SET.has(spec.mode)) throw new Error(`unknown mode ${JSON.stringify(spec.mode)}; expected one of ${MODES.join(', ')}`);
    const prefix = spec.path_prefix ?? '/';
    if (typeof prefix !== 'string' || !prefix.startsWith('/')) throw new Error('path_prefix must be a string starting with "/"');
    const count = spec.count ?? 1;
    if (!Number.isInteger(count) || count === 0 || count < -1) throw new Error('count must be a positive integer, or -1 for unlimited');
    const after = spec.after ?? 0;
    if (!Number.isInteger(after) || after < 0) throw new Error('after must be a non-negative integer');
    for (const k of ['retry_after', 'status', 'bytes', 'interval_ms']) {
      if (spec[k] !== undefined && (!Number.isInteger(spec[k]) || spec[k] < 0)) throw new Error(`${k} must be a non-negative integer`);
    }
    if (spec.status !== undefined && (spec.status < 100 || spec.status > 599)) throw new Error('status must be an HTTP status code');
    if (spec.query !== undefined && (typeof spec.query !== 'object' || spec.query === null || Array.isArray(spec.query))) {
      throw new Error('query must be an object of parameter -> value');
    }
    const f = {
      id: this.nextId++,
      mode: spec.mode,
      path_prefix: prefix,
      count,
      remaining: count,
      after,
      skipped: 0,
      hits: 0,
      method: spec.method ? String(spec.method).toUpperCase() : undefined,
      token: spec.token,
      query: spec.query,
      retry_after: spec.retry_after,
      status: spec.status,
      bytes: spec.bytes,
      interval_ms: spec.interval_ms,
    };
    this.faults.push(f);
    return f;
  }

  list() {
    return this.faults.map((f) => ({ ...f }));
  }

  clear() {
    const n = this.faults.length;
    this.faults = [];
    return n;
  }

  remove(id) {
    const before = this.faults.length;
    this.faults = this.faults.filter((f) => f.id !== id);
    return before !== this.faults.length;
  }

  // First armed fault matching the request; consumes one of its `count`.
  // `canonical` is the /orgs/{login}/... form of an /organizations/{id}/... path,
  // so a prefix like "/orgs/acme/repos" also covers the pages GitHub links to.
  match(method, pathname, canonical, search, tokenKey) {
    let params = null;
    for (let i = 0; i < this.faults.length; i++) {
      const f = this.faults[i];
      if (!pathname.startsWith(f.path_prefix) && !canonical.startsWith(f.path_prefix)) continue;
      if (f.method && f.method !== method) continue;
      if (f.token !== undefined && f.token !== tokenKey) continue;
      if (f.query) {
        if (!params) params = new URLSearchParams(search);
        let ok = true;
        for (const [k, v] of Object.entries(f.query)) {
          if (params.get(k) !== String(v)) {
            ok = false;
            break;
          }
        }
        if (!ok) continue;
      }
      if (f.skipped < f.after) {
        f.skipped++;
        continue;
      }
      f.hits++;
      if (f.remaining > 0) {
        f.remaining--;
        if (f.remaining === 0) this.faults.splice(i, 1);
      }
      return f;
    }
    return null;
  }
}

// One-off fault from the request's own query string (?_sim_fault=mode).
function adhocFault(search) {
  const q = new URLSearchParams(search);
  const mode = q.get('_sim_fault');
  if (!mode || !MODE_SET.has(mode)) return null;
  const num = (k) => {
    const v = q.get(k);
    return v !== null && /^\d+$/.test(v) ? parseInt(v, 10) : undefined;
  };
  return {
    id: 0,
    mode,
    retry_after: num('_sim_retry_after'),
    status: num('_sim_status'),
    bytes: num('_sim_bytes'),
    interval_ms: num('_sim_interval_ms'),
  };
}

function withoutHeader(headers, name) {
  const out = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i].toLowerCase() !== name) out.push(headers[i], headers[i + 1]);
  }
  return out;
}

// ctx: {provider, info, hugeBytes, onStatus}
function runFault(f, req, res, ctx) {
  const { provider, info } = ctx;
  const sock = req.socket;
  switch (f.mode) {
    case 'reset': {
      if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
      else sock.destroy();
      return;
    }
    case 'hang':
      // Never answer. The socket stays open until the client gives up or the simulator exits.
      return;
    case 'secondary_rate_limit':
    case 'rate_limit_429': {
      const status = f.mode === 'rate_limit_429' ? 429 : 403;
      const { headers, requestId } = provider.faultHeaders(req);
      const body = provider.secondaryLimitBody(requestId, status);
      headers.push('retry-after', String(f.retry_after ?? 60), 'content-length', String(body.length));
      ctx.onStatus(status);
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    case 'server_error': {
      const status = f.status ?? 502;
      const { headers } = provider.faultHeaders(req);
      const body = Buffer.from(JSON.stringify({ message: 'Server Error' }));
      headers.push('content-length', String(body.length));
      ctx.onStatus(status);
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    case 'bad_json': {
      const r = provider.respond(req, { ...info, consume: false });
      const real = r.body && r.body.length ? r.body : Buffer.from('[]');
      // Half of the real document followed by junk: never valid JSON.
      const body = Buffer.concat([real.subarray(0, Math.max(1, real.length >> 1)), Buffer.from('<!-- upstream error -->')]);
      const headers = withoutHeader(withoutHeader(r.headers, 'content-length'), 'etag');
      headers.push('content-length', String(body.length));
      ctx.onStatus(200);
      res.writeHead(200, headers);
      res.end(body);
      return;
    }
    case 'truncated': {
      const r = provider.respond(req, { ...info, consume: false });
      const real = r.body && r.body.length ? r.body : Buffer.from('[]');
      const headers = withoutHeader(r.headers, 'content-length');
      headers.push('content-length', String(real.length));
      ctx.onStatus(r.status);
      res.writeHead(r.status, headers);
      res.write(real.subarray(0, Math.max(1, real.length >> 1)), () => sock.destroy());
      return;
    }
    case 'slow': {
      const r = provider.respond(req, { ...info, consume: false });
      const body = r.body || Buffer.alloc(0);
      const interval = f.interval_ms ?? 200;
      ctx.onStatus(r.status);
      res.writeHead(r.status, r.headers);
      res.flushHeaders();
      let i = 0;
      const timer = setInterval(() => {
        if (res.destroyed || i >= body.length) {
          clearInterval(timer);
          if (!res.destroyed) res.end();
          return;
        }
        res.write(body.subarray(i, i + 1));
        i++;
      }, interval);
      res.on('close', () => clearInterval(timer));
      return;
    }
    case 'huge': {
      const target = f.bytes ?? ctx.hugeBytes;
      const { headers } = provider.faultHeaders(req);
      ctx.onStatus(200);
      res.writeHead(200, headers); // no content-length: chunked
      const items = provider.sampleItems(req, 100).map((o) => JSON.stringify(o));
      // Pre-build a ~64 KiB chunk of comma-separated items to keep the loop cheap.
      let block = '';
      let k = 0;
      while (block.length < 65536) block += (block ? ',' : '') + items[k++ % items.length];
      const blockBuf = Buffer.from(',' + block);
      let written = 0;
      let first = true;
      const pump = () => {
        while (!res.destroyed) {
          if (written >= target) {
            res.end(']');
            return;
          }
          let ok;
          if (first) {
            first = false;
            const head = Buffer.from('[' + block);
            written += head.length;
            ok = res.write(head);
          } else {
            written += blockBuf.length;
            ok = res.write(blockBuf);
          }
          if (!ok) {
            res.once('drain', pump);
            return;
          }
        }
      };
      pump();
      return;
    }
    default:
      throw new Error(`unhandled fault mode ${f.mode}`);
  }
}

module.exports = { FaultRegistry, MODES, adhocFault, runFault };
