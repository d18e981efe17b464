'use strict';
// Small deterministic pseudo-random helpers for the generated data sets.
// mulberry32 is a 32-bit generator: fast, tiny, and good enough for test data.
// Nothing here is suitable for cryptography.

function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// FNV-1a over a string, used to derive independent sub-seeds (per org, per table).
function hashString(s, basis = 0x811c9dc5) {
  let h = basis >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function deriveSeed(seed, label) {
  return hashString(String(label), (hashString(String(seed)) ^ 0x9e3779b9) >>> 0);
}

class Rng {
  constructor(seed) {
    this.next = mulberry32(seed);
  }
  float() {
    return this.next();
  }
  // integer in [min, max]
  int(min, max) {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  bool(p) {
    return this.next() < p;
  }
  pick(arr) {
    return arr[Math.floor(this.next() * arr.length)];
  }
  // weighted pick: entries are [value, weight]
  weighted(entries) {
    let total = 0;
    for (const [, w] of entries) total += w;
    let r = this.next() * total;
    for (const [v, w] of entries) {
      r -= w;
      if (r < 0) return v;
    }
    return entries[entries.length - 1][0];
  }
  // k distinct items from arr, order preserved from arr
  sample(arr, k) {
    const idx = arr.map((_, i) => [this.next(), i]).sort((x, y) => x[0] - y[0]).slice(0, k).map((x) => x[1]);
    idx.sort((x, y) => x - y);
    return idx.map((i) => arr[i]);
  }
  hex(n) {
    let s = '';
    for (let i = 0; i < n; i++) s += Math.floor(this.next() * 16).toString(16);
    return s;
  }
}

module.exports = { mulberry32, hashString, deriveSeed, Rng };
