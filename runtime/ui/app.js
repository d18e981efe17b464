// The dashboard: reads GET /v1/health with the token the operator entered
// (kept in sessionStorage, so it goes when the tab closes) and redraws the
// table every 2 s. Every text from the API is inserted with textContent,
// never as HTML.
'use strict';

(function () {
  const POLL_MS = 2000;
  const KEY = 'junction.token';
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let items = [];

  function token() {
    return sessionStorage.getItem(KEY) || '';
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function pct(v) {
    return v === null || v === undefined ? '-' : (v * 100).toFixed(1) + ' %';
  }

  function ms(v) {
    return v === null || v === undefined ? '-' : Math.round(v) + ' ms';
  }

  function when(ts) {
    if (!ts) return '-';
    const d = new Date(ts);
    return isNaN(d) ? String(ts) : d.toLocaleString();
  }

  function fillSelect(sel, values) {
    const keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    for (const v of values) {
      const o = el('option', v);
      o.value = v;
      sel.appendChild(o);
    }
    sel.value = values.includes(keep) ? keep : '';
  }

  function row(it) {
    const tr = el('tr');
    tr.dataset.integration = it.integration_id;
    if (!it.enabled) tr.className = 'disabled';
    tr.appendChild(el('td', it.integration_id));
    tr.appendChild(el('td', it.organization_id));
    tr.appendChild(el('td', it.provider));
    const st = el('td');
    st.appendChild(el('span', it.status, 'badge status status-' + it.status));
    tr.appendChild(st);
    tr.appendChild(el('td', pct(it.success_rate_1h === null ? null : 1 - it.success_rate_1h),
                      'num error-rate'));
    tr.appendChild(el('td', it.requests_1h + ' / ' + it.errors_1h, 'num'));
    tr.appendChild(el('td', ms(it.avg_latency_ms), 'num'));
    tr.appendChild(el('td', it.breaker, 'state-' + it.breaker));
    const rl = it.rate_limit || {};
    const factor = typeof rl.factor === 'number' ? ' (x' + rl.factor.toFixed(2) + ')' : '';
    tr.appendChild(el('td', (rl.state || '-') + factor, 'state-' + (rl.state || 'none')));
    const ls = it.last_sync;
    tr.appendChild(el('td', ls ? ls.status + (ls.finished_at ? ' ' + when(ls.finished_at) : '') : '-'));
    const errs = el('td');
    if (it.recent_errors && it.recent_errors.length) {
      const ul = el('ul', null, 'errors');
      for (const e of it.recent_errors.slice(0, 3)) {
        const text = when(e.at) + ' ' + e.class + ': ' + e.message;
        const li = el('li', text);
        li.title = text; // the whole message; the cell shows two lines
        ul.appendChild(li);
      }
      errs.appendChild(ul);
    } else {
      errs.textContent = '-';
    }
    tr.appendChild(errs);
    return tr;
  }

  function render() {
    const org = $('filter-org').value;
    const provider = $('filter-provider').value;
    const shown = items.filter((it) => (!org || it.organization_id === org) &&
                                       (!provider || it.provider === provider));
    const body = $('rows');
    body.replaceChildren(...shown.map(row));
    const by = {};
    for (const it of shown) by[it.status] = (by[it.status] || 0) + 1;
    $('counts').textContent = shown.length + ' integrations' +
      Object.keys(by).sort().map((k) => ', ' + by[k] + ' ' + k).join('');
  }

  async function poll() {
    const t = token();
    if (!t) {
      $('message').textContent = 'Enter an API token to see integration health.';
      return;
    }
    try {
      const res = await fetch('/v1/health', {
        headers: { Authorization: 'Bearer ' + t },
        cache: 'no-store',
        credentials: 'omit',
      });
      if (res.status === 401) {
        $('message').textContent = 'The token was refused (401): enter a valid token.';
        items = [];
        render();
        return;
      }
      if (!res.ok) {
        $('message').textContent = 'GET /v1/health answered ' + res.status + '.';
        return;
      }
      const doc = await res.json();
      items = Array.isArray(doc.integrations) ? doc.integrations : [];
      items.sort((a, b) => (a.organization_id + a.integration_id)
        .localeCompare(b.organization_id + b.integration_id));
      fillSelect($('filter-org'), [...new Set(items.map((i) => i.organization_id))].sort());
      fillSelect($('filter-provider'), [...new Set(items.map((i) => i.provider))].sort());
      $('message').textContent = '';
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      $('updated').dataset.generatedAt = doc.generated_at || '';
      render();
    } catch (e) {
      $('message').textContent = 'Cannot reach the runtime: ' + e.message;
    }
  }

  function start() {
    if (timer) clearInterval(timer);
    poll();
    timer = setInterval(poll, POLL_MS);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('auth').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (t) sessionStorage.setItem(KEY, t);
      $('token').value = '';
      start();
    });
    $('forget-token').addEventListener('click', () => {
      sessionStorage.removeItem(KEY);
      items = [];
      render();
      $('updated').textContent = 'not loaded';
      start();
    });
    $('filter-org').addEventListener('change', render);
    $('filter-provider').addEventListener('change', render);
    start();
  });
})();
