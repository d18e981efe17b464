'use strict';
// Request counters for GET /_sim/stats. Cheap enough for the hot path: a few
// Map increments per request. The simulator is a single process, so counts are exact.

const MAX_PATHS = 10000; // distinct paths tracked before folding into "(other)"
const HISTOGRAM_SECONDS = 3600; // per-second buckets kept
const MAX_ARRIVALS = 100000; // arrival times kept for GET /_sim/arrivals
const { performance } = require('node:perf_hooks');

function inc(map, key) {
  map.set(key, (map.get(key) || 0) + 1);
}

function toObject(map) {
  const o = {};
  for (const [k, v] of map) o[k] = v;
  return o;
}

class Stats {
  constructor() {
    this.inFlight = 0;
    this.reset();
  }

  reset() {
    this.total = 0;
    this.byPath = new Map();
    this.byRoute = new Map();
    this.byToken = new Map();
    this.byStatus = new Map();
    this.faults = new Map();
    this.perSecond = new Map();
    this.arrivals = new Float64Array(MAX_ARRIVALS);
    this.narrivals = 0;
    this.peakInFlight = this.inFlight;
    this.resetAt = Date.now();
  }

  request(pathname, route, tokenKey) {
    this.total++;
    // Sub-millisecond epoch times of API requests, for checking rate limits over
    // sliding windows; the ring keeps the newest MAX_ARRIVALS.
    this.arrivals[this.narrivals++ % MAX_ARRIVALS] = performance.timeOrigin + performance.now();
    if (this.byPath.has(pathname) || this.byPath.size < MAX_PATHS) inc(this.byPath, pathname);
    else inc(this.byPath, '(other)');
    inc(this.byRoute, route);
    inc(this.byToken, tokenKey);
    const sec = Math.floor(Date.now() / 1000);
    const n = this.perSecond.get(sec);
    if (n === undefined) {
      this.perSecond.set(sec, 1);
      if (this.perSecond.size > HISTOGRAM_SECONDS) {
        // Map keeps insertion order, which is chronological here.
        this.perSecond.delete(this.perSecond.keys().next().value);
      }
    } else {
      this.perSecond.set(sec, n + 1);
    }
  }

  begin() {
    this.inFlight++;
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight;
  }

  end() {
    this.inFlight--;
  }

  status(code) {
    inc(this.byStatus, String(code));
  }

  fault(mode) {
    inc(this.faults, mode);
  }

  arrivalsJSON() {
    const n = Math.min(this.narrivals, MAX_ARRIVALS);
    const start = this.narrivals > MAX_ARRIVALS ? this.narrivals % MAX_ARRIVALS : 0;
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.round(this.arrivals[(start + i) % MAX_ARRIVALS] * 1000) / 1000;
    return { arrivals: out, dropped: this.narrivals - n };
  }

  toJSON() {
    const perSecond = [];
    let peak = 0;
    for (const [t, count] of this.perSecond) {
      perSecond.push({ t, count });
      if (count > peak) peak = count;
    }
    return {
      total: this.total,
      by_path: toObject(this.byPath),
      by_route: toObject(this.byRoute),
      by_token: toObject(this.byToken),
      by_status: toObject(this.byStatus),
      faults_injected: toObject(this.faults),
      in_flight: this.inFlight,
      peak_in_flight: this.peakInFlight,
      per_second: perSecond,
      peak_per_second: peak,
      since: new Date(this.resetAt).toISOString(),
    };
  }
}

module.exports = { Stats };
