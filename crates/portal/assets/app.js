// interop-rs Management Portal: a dependency-free single-page app (ES2020).
// Pages: production (default), test, messages, trace/{sid}, log. Routing uses the
// hash (#/trace/17); a path such as /portal/trace/17 is rewritten to that form at
// start-up. All DOM is built with h()/svg(), which only ever turn data into text
// nodes or attribute values, so names and message bodies cannot inject markup.
'use strict';

const TOKEN_KEY = 'interop.apiToken';
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------- helpers
function build(el, attrs, kids) {
  let value;
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'value') value = v;
    else if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  }
  if (value !== undefined) el.value = value;
  return el;
}
const h = (tag, attrs, ...kids) => build(document.createElement(tag), attrs, kids);
const svg = (tag, attrs, ...kids) => build(document.createElementNS(SVG_NS, tag), attrs, kids);
// Replace an element's children, skipping null/false like h() does (replaceChildren would write "null").
const fill = (el, ...kids) => { el.replaceChildren(); return build(el, {}, kids); };
const enc = encodeURIComponent;
const pretty = (v) => (v === undefined ? '' : JSON.stringify(v, null, 2));
const text = (v) => (typeof v === 'string' ? v : pretty(v));
const isErr = (m) => !!(m.is_error || m.status === 'error');
const traceHref = (sid) => `#/trace/${enc(sid)}`;

function say(el, msg, kind = 'info') {
  el.textContent = msg || '';
  el.className = `msg ${kind}`;
  el.hidden = !msg;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');
function fmtTime(t, clockOnly = false) {
  if (!t) return '';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return clockOnly ? clock : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock}`;
}
const timeEl = (t) => (t ? h('time', { datetime: t, title: t }, fmtTime(t)) : '');

const STATE_CLASS = { running: 'ok', disabled: 'off', error: 'err', stopped: 'stop' };
const light = (state, detail) =>
  h('span', { class: `light ${STATE_CLASS[state] || 'warn'}`, title: detail || null },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), state || 'unknown');
const statusBadge = (m) => h('span', { class: `status ${isErr(m) ? 'bad' : ''}` }, m.status || '');

function field(label, control, cls = '') {
  return h('div', { class: `field ${cls}` }, h('label', { for: control.id }, label), control);
}
function kvTable(obj, caption) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('p', { class: 'muted' }, 'None');
  return h('table', { class: 'kv' }, caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, text(v))))));
}
const tableWrap = (table) => h('div', { class: 'table-wrap' }, table);

// ---------------------------------------------------------------- API + token
class ApiError extends Error {
  constructor(message, status, data) {
    super(message);
    this.status = status;
    this.data = data || {};
  }
}

let tokenPrompt = null;
function askToken(refused) {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const input = h('input', { id: 'api-token', name: 'token', type: 'password', autocomplete: 'off', required: true });
    const overlay = h('div', { class: 'overlay' },
      h('form', {
        class: 'card token-form', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'token-title',
        onsubmit: (e) => {
          e.preventDefault();
          sessionStorage.setItem(TOKEN_KEY, input.value.trim());
          overlay.remove();
          tokenPrompt = null;
          resolve();
        },
      },
      h('h2', { id: 'token-title' }, 'API token required'),
      h('p', {}, refused ? 'The server refused the token. Please enter it again.'
        : 'The management API needs a token. It is kept only in this browser tab.'),
      field('API token', input),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Continue'))));
    document.body.append(overlay);
    input.focus();
  });
  return tokenPrompt;
}

async function api(path, opts = {}, retried = false) {
  const headers = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method: opts.method || 'GET', headers, cache: 'no-store',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (e) {
    throw new ApiError(`Cannot reach the server (${e.message})`, 0, null);
  }
  if (res.status === 401 && !retried) {
    // Only prompt if nobody changed the token meanwhile (concurrent requests share one prompt).
    if (sessionStorage.getItem(TOKEN_KEY) === token) {
      sessionStorage.removeItem(TOKEN_KEY);
      await askToken(!!token);
    }
    return api(path, opts, true);
  }
  const body = await res.text();
  let data = null;
  try { data = body ? JSON.parse(body) : null; } catch { data = null; }
  if (!res.ok) {
    const msg = (data && data.error != null) ? text(data.error) : `${res.status} ${res.statusText}`.trim();
    throw new ApiError(msg, res.status, data);
  }
  return data;
}

// ---------------------------------------------------------------- router
const PAGES = { production: pageProduction, test: pageTest, messages: pageMessages, trace: pageTrace, log: pageLog };
const TITLES = { production: 'Production', test: 'Test', messages: 'Messages', trace: 'Visual Trace', log: 'Event Log' };

function parseHash() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  let parts = path.split('/').filter(Boolean);
  try { parts = parts.map(decodeURIComponent); } catch { /* keep raw */ }
  return { page: parts[0] || 'production', arg: parts[1] || '', params: new URLSearchParams(query) };
}

// /portal/trace/17 -> /portal/#/trace/17 so that every link can be a plain hash link.
function normalizeLocation() {
  const m = location.pathname.match(/^(.*\/portal)\/(.+)$/);
  if (!m) return;
  const hash = location.hash.length > 2 ? location.hash : `#/${m[2]}${location.search}`;
  history.replaceState(null, '', `${m[1]}/${hash}`);
}

function route() {
  const r = parseHash();
  const page = PAGES[r.page] ? r.page : 'production';
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // Each page renders into its own root; async work checks root.isConnected
  // so a page left behind stops polling and its late results go nowhere.
  const root = h('div', { class: `page page-${page}` });
  document.getElementById('main').replaceChildren(root);
  document.title = `${TITLES[page]} · interop-rs`;
  PAGES[page](root, r);
}

// ---------------------------------------------------------------- production page
const KINDS = [['service', 'Services'], ['process', 'Processes'], ['operation', 'Operations']];

function pageProduction(root) {
  const nameEl = h('h1', {}, 'Production');
  const stateEl = h('span', { class: 'prod-state' });
  const refreshed = h('span', { class: 'muted small' });
  const msg = h('p', { class: 'msg', role: 'status', hidden: true });
  const conn = h('p', { class: 'msg', role: 'alert', hidden: true });
  const prodButtons = ['start', 'stop', 'update'].map((a) =>
    h('button', { type: 'button', class: a === 'start' ? 'primary' : '', onclick: () => prodAction(a) },
      { start: 'Start', stop: 'Stop', update: 'Update' }[a]));
  const cols = {};
  const columns = KINDS.map(([kind, title]) => {
    cols[kind] = h('div', { class: 'item-list' });
    return h('section', { class: 'column', 'aria-labelledby': `col-${kind}` }, h('h2', { id: `col-${kind}` }, title), cols[kind]);
  });
  const panel = h('aside', { class: 'panel item-panel', hidden: true, 'aria-label': 'Item details',
    onkeydown: (e) => { if (e.key === 'Escape') select(null); } });
  const panelMsg = h('p', { class: 'msg', role: 'status', hidden: true });
  const panelCounts = h('p', { class: 'counts' });
  root.append(
    h('div', { class: 'page-head' },
      h('div', { class: 'title' }, nameEl, stateEl, refreshed),
      h('div', { class: 'actions' }, prodButtons)),
    conn, msg,
    h('div', { class: 'prod-layout' }, h('div', { class: 'columns' }, columns), panel));

  let prod = null;
  let selected = null;
  let order = '';
  let panelKey = '';
  const cards = new Map();

  // The card shows the three main counters; the panel adds restarts and alerts.
  const counts = (it, all = false) => [
    h('span', { class: 'count' }, h('b', {}, it.queued ?? 0), ' queued'),
    h('span', { class: 'count' }, h('b', {}, it.processed ?? 0), ' processed'),
    h('span', { class: `count ${it.errors > 0 ? 'bad' : ''}` }, h('b', {}, it.errors ?? 0), ' errors'),
    all || it.restarts > 0 ? h('span', { class: `count ${it.restarts > 0 ? 'bad' : ''}` }, h('b', {}, it.restarts ?? 0), ' restarts') : null,
    all || it.alerts > 0 ? h('span', { class: `count ${it.alerts > 0 ? 'bad' : ''}` }, h('b', {}, it.alerts ?? 0), ' alerts') : null,
  ];

  function render() {
    nameEl.textContent = prod.name || 'Production';
    stateEl.replaceChildren(light(prod.state));
    prodButtons[0].disabled = prod.state === 'running';
    prodButtons[1].disabled = prod.state === 'stopped';
    const key = prod.items.map((i) => `${i.kind}/${i.name}`).join('\n');
    if (key !== order) { // item set changed: rebuild cards (otherwise update in place to keep focus)
      order = key;
      cards.clear();
      Object.values(cols).forEach((c) => c.replaceChildren());
      for (const it of prod.items) {
        const name = it.name;
        const card = h('button', { type: 'button', class: 'item', onclick: () => select(name, true) });
        cards.set(name, card);
        (cols[it.kind] || cols.process).append(card);
      }
      Object.values(cols).forEach((c) => { if (!c.children.length) c.append(h('p', { class: 'muted' }, 'None')); });
    }
    for (const it of prod.items) {
      const card = cards.get(it.name);
      fill(card,
        h('span', { class: 'item-top' }, h('span', { class: 'item-name' }, it.name), light(it.state, it.state_detail)),
        h('span', { class: 'item-class' }, it.class),
        it.state_detail ? h('span', { class: `item-detail ${it.state === 'error' ? 'bad' : 'muted'}` }, it.state_detail) : null,
        h('span', { class: 'counts' }, counts(it)));
      card.setAttribute('aria-pressed', String(it.name === selected));
      card.classList.toggle('is-disabled', it.enabled === false);
    }
    renderPanel();
  }

  function renderPanel() {
    const it = prod && prod.items.find((i) => i.name === selected);
    if (!it) { panel.hidden = true; panelKey = ''; return; }
    fill(panelCounts, counts(it, true));
    const key = JSON.stringify({ ...it, queued: 0, processed: 0, errors: 0, restarts: 0, alerts: 0 });
    if (key === panelKey) return;
    panelKey = key;
    const focused = panel.contains(document.activeElement) ? document.activeElement.dataset.act : null;
    // Only what applies: a disabled item can be enabled (the API refuses to restart it), an enabled one disabled or restarted.
    const off = it.enabled === false;
    const act = (a, label, applies) => h('button', { type: 'button', 'data-act': a, disabled: !applies,
      onclick: (e) => itemAction(it.name, a, e.currentTarget) }, label);
    const targets = Object.entries(it.targets || {});
    panel.hidden = false;
    fill(panel,
      h('div', { class: 'panel-head' },
        h('h2', { tabindex: '-1' }, it.name),
        h('button', { type: 'button', class: 'close', 'data-act': 'close', 'aria-label': 'Close item details', onclick: () => select(null) }, '×')),
      h('p', { class: 'item-state' }, light(it.state), h('span', { class: 'muted small' },
        [it.class, it.kind, `pool size ${it.pool_size ?? 1}`, off && it.state !== 'disabled' ? 'disabled' : null].filter(Boolean).join(' · '))),
      it.state_detail ? h('p', { class: `state-detail ${it.state === 'error' ? 'bad' : ''}` }, it.state_detail) : null,
      it.comment ? h('p', { class: 'comment' }, it.comment) : null,
      panelCounts,
      h('div', { class: 'actions' }, act('enable', 'Enable', off), act('disable', 'Disable', !off), act('restart', 'Restart', !off),
        h('button', { type: 'button', 'data-act': 'test', onclick: () => { location.hash = `#/test?item=${enc(it.name)}`; } }, 'Test')),
      panelMsg,
      h('h3', {}, 'Settings'), kvTable(it.settings, `Settings of ${it.name}`),
      h('h3', {}, 'Accepted message types'),
      (it.accepts || []).length ? h('ul', { class: 'tags' }, it.accepts.map((t) => h('li', {}, t))) : h('p', { class: 'muted' }, 'None'),
      h('h3', {}, 'Targets'),
      targets.length ? h('table', { class: 'kv' }, h('tbody', {}, targets.map(([k, v]) => h('tr', {},
        h('th', { scope: 'row' }, k),
        h('td', {}, prod.items.some((i) => i.name === v)
          ? h('button', { type: 'button', class: 'linkish', onclick: () => select(v, true) }, v) : text(v))))))
        : h('p', { class: 'muted' }, 'None'));
    if (focused) panel.querySelector(`[data-act="${focused}"]`)?.focus();
  }

  function select(name, focusPanel = false) {
    const previous = selected;
    selected = name;
    panelKey = '';
    say(panelMsg, '');
    if (prod) render();
    if (name && focusPanel) panel.querySelector('h2')?.focus();
    if (!name && previous) cards.get(previous)?.focus();
  }

  async function itemAction(name, action, btn) {
    btn.disabled = true;
    try {
      const item = await api(`/api/items/${enc(name)}/${action}`, { method: 'POST' });
      if (item && item.name && prod) {
        const i = prod.items.findIndex((x) => x.name === item.name);
        if (i >= 0) prod.items[i] = item;
      }
      say(panelMsg, `${name}: ${action} done.`, 'ok');
      render();
    } catch (e) {
      say(panelMsg, `${name}: ${action} failed: ${e.message}`, 'error');
    } finally {
      // The click disabled the button, which dropped the focus: give it to the re-rendered button, or to its
      // counterpart when it no longer applies (Enable after a disable).
      if (btn.isConnected) btn.disabled = false;
      if (document.activeElement === document.body) {
        const again = panel.querySelector(`[data-act="${action}"]:not(:disabled)`)
          || panel.querySelector(`[data-act="${{ enable: 'disable', disable: 'enable' }[action] || action}"]:not(:disabled)`);
        again?.focus();
      }
    }
  }

  async function prodAction(action) {
    const clicked = prodButtons[['start', 'stop', 'update'].indexOf(action)];
    prodButtons.forEach((b) => { b.disabled = true; });
    try {
      const res = await api(`/api/production/${action}`, { method: 'POST' });
      say(msg, (res && res.message) || `Production ${action} done.`, res && res.ok === false ? 'error' : 'ok');
    } catch (e) {
      say(msg, `Production ${action} failed: ${e.message}`, 'error');
    }
    prodButtons.forEach((b) => { b.disabled = false; });
    await refresh();
    if (document.activeElement === document.body) (prodButtons.find((b) => b === clicked && !b.disabled) || prodButtons.find((b) => !b.disabled))?.focus();
  }

  async function refresh() {
    try {
      prod = await api('/api/production');
      prod.items = prod.items || [];
      say(conn, '');
      refreshed.textContent = `live · refreshed ${new Date().toLocaleTimeString()}`;
      render();
    } catch (e) {
      say(conn, `Cannot load the production: ${e.message}`, 'error');
    }
  }

  (async function poll() {
    if (!root.isConnected) return;
    await refresh();
    if (root.isConnected) setTimeout(poll, 2000);
  })();
}

// ---------------------------------------------------------------- test page
async function pageTest(root, r) {
  const itemSel = h('select', { id: 'test-item', name: 'item' });
  const typeSel = h('select', { id: 'test-type', name: 'type' });
  const bodyTa = h('textarea', { id: 'test-body', name: 'body', rows: 14, spellcheck: 'false', class: 'code' });
  const sendBtn = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const note = h('p', { class: 'msg', hidden: true });
  const out = h('div', { class: 'result', 'aria-live': 'polite' });
  root.append(h('h1', {}, 'Test'), note,
    h('div', { class: 'test-layout' },
      h('form', { class: 'card test-form', onsubmit: send },
        field('Target item', itemSel), field('Message type', typeSel), field('Request body (JSON)', bodyTa),
        h('div', { class: 'actions' }, sendBtn, h('button', { type: 'button', onclick: fillExample }, 'Reset body'))),
      out));

  let items = [];
  let types = [];
  try {
    const [p, t] = await Promise.all([api('/api/production'), api('/api/message-types')]);
    items = p.items || [];
    types = t.types || [];
    if (p.testing_enabled === false) say(note, 'Testing is disabled for this production (testing_enabled = false); test requests will be refused.', 'warn');
  } catch (e) {
    say(note, `Cannot load items or message types: ${e.message}`, 'error');
    return;
  }
  if (!items.length) { say(note, 'The production has no items.', 'warn'); return; }

  for (const [kind, title] of KINDS) {
    const group = items.filter((i) => i.kind === kind);
    if (group.length) itemSel.append(h('optgroup', { label: title }, group.map((i) => h('option', { value: i.name }, i.name))));
  }
  const others = items.filter((i) => !KINDS.some(([k]) => k === i.kind));
  others.forEach((i) => itemSel.append(h('option', { value: i.name }, i.name)));
  const wanted = r.arg || r.params.get('item');
  const fallback = items.find((i) => i.kind === 'process') || items[0];
  itemSel.value = items.some((i) => i.name === wanted) ? wanted : fallback.name;

  function fillTypes() {
    const item = items.find((i) => i.name === itemSel.value) || {};
    const accepts = (item.accepts || []).filter((a) => types.some((t) => t.type === a));
    const opt = (t) => h('option', { value: t.type }, t.type);
    typeSel.replaceChildren();
    if (accepts.length) {
      typeSel.append(h('optgroup', { label: `Accepted by ${item.name}` }, accepts.map((a) => opt({ type: a }))),
        h('optgroup', { label: 'Other types' }, types.filter((t) => !accepts.includes(t.type)).map(opt)));
    } else {
      typeSel.append(...types.map(opt));
    }
    typeSel.value = accepts[0] || (types[0] && types[0].type) || '';
    fillExample();
  }
  function fillExample() {
    const t = types.find((x) => x.type === typeSel.value);
    // Types without an example (replies, mostly) have `example: null`: start from an empty object.
    bodyTa.value = pretty(t && t.example != null ? t.example : {});
  }
  itemSel.addEventListener('change', fillTypes);
  typeSel.addEventListener('change', fillExample);
  fillTypes();

  async function send(e) {
    e.preventDefault();
    let body;
    try {
      body = bodyTa.value.trim() ? JSON.parse(bodyTa.value) : {};
    } catch (err) {
      showResult({ error: `Invalid JSON in the request body: ${err.message}` });
      bodyTa.focus();
      return;
    }
    sendBtn.disabled = true;
    out.replaceChildren(h('p', { class: 'muted' }, 'Sending…'));
    try {
      showResult(await api(`/api/items/${enc(itemSel.value)}/test`, { method: 'POST', body: { type: typeSel.value, body } }) || {});
    } catch (err) {
      showResult({ error: err.message, session_id: err.data.session_id });
    } finally {
      sendBtn.disabled = false;
    }
  }
  function showResult(res) {
    const sid = res.session_id;
    const link = sid != null ? h('p', {}, h('a', { href: traceHref(sid) }, `View the visual trace of session ${sid}`),
      res.request_id != null ? h('span', { class: 'muted' }, ` · request `, h('a', { href: `#/messages/${enc(res.request_id)}?session=${enc(sid)}` }, `#${res.request_id}`)) : null) : null;
    if (res.error != null) {
      out.replaceChildren(h('div', { class: 'card result-error', role: 'alert' },
        h('h2', {}, 'Error'), h('pre', { class: 'error-text' }, text(res.error)), link));
    } else if (res.reply) {
      out.replaceChildren(h('div', { class: 'card' },
        h('h2', {}, 'Reply: ', h('code', {}, res.reply.type || '?')), h('pre', { class: 'json' }, pretty(res.reply.body)), link));
    } else {
      out.replaceChildren(h('div', { class: 'card' }, h('h2', {}, 'Sent'), h('p', {}, 'No reply was returned.'), link));
    }
  }
}

// ---------------------------------------------------------------- message detail (messages + trace)
function messageDetail(m, onClose) {
  const out = h('div', { 'aria-live': 'polite' });
  const resendBtn = h('button', { type: 'button', onclick: resend }, 'Resend');
  async function resend() {
    resendBtn.disabled = true;
    const link = (sid) => (sid != null ? [' ', h('a', { href: traceHref(sid) }, `View trace of session ${sid}`)] : null);
    try {
      const res = await api(`/api/messages/${enc(m.id)}/resend`, { method: 'POST' }) || {};
      out.replaceChildren(h('p', { class: `msg ${res.error != null ? 'error' : 'ok'}` },
        `Resent as message ${res.id ?? '?'} in session ${res.session_id ?? '?'}.`,
        res.error != null ? ` Error: ${text(res.error)}.` : '',
        res.reply ? ` Reply: ${res.reply.type || '?'}.` : '', link(res.session_id)));
    } catch (e) {
      out.replaceChildren(h('p', { class: 'msg error' }, `Resend failed: ${e.message}`, link(e.data.session_id)));
    } finally {
      resendBtn.disabled = false;
    }
  }
  const row = (k, v, cls) => h('tr', { class: cls }, h('th', { scope: 'row' }, k), h('td', {}, v));
  return h('div', { class: 'msg-detail' },
    h('div', { class: 'panel-head' }, h('h2', { tabindex: '-1' }, `Message ${m.id}`),
      onClose ? h('button', { type: 'button', class: 'close', 'aria-label': 'Close message', onclick: onClose }, '×') : null),
    h('table', { class: 'kv' }, h('tbody', {},
      row('Type', m.type), row('Kind', m.kind), row('Status', statusBadge(m)),
      row('Source', m.source), row('Target', m.target),
      row('Session', h('a', { href: traceHref(m.session_id) }, m.session_id)),
      row('Parent', m.parent_id ?? '—'),
      m.error != null ? row('Error', text(m.error), 'bad') : null,
      row('Created', timeEl(m.created)), row('Processed', timeEl(m.processed) || '—'))),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: traceHref(m.session_id) }, 'Visual trace'), resendBtn),
    out,
    h('h3', {}, 'Body'), h('pre', { class: 'json' }, pretty(m.body)));
}

// ---------------------------------------------------------------- messages page
function pageMessages(root, r) {
  const p = r.params;
  const input = (name) => h('input', { id: `f-${name}`, name, type: 'search', value: p.get(name) || '', autocomplete: 'off',
    inputmode: name === 'session' ? 'numeric' : null });
  const f = { session: input('session'), source: input('source'), target: input('target'), type: input('type') };
  f.status = h('select', { id: 'f-status', name: 'status', value: p.get('status') || '' },
    ['', 'queued', 'delivered', 'completed', 'error', 'discarded'].map((v) => h('option', { value: v }, v || 'any')));
  f.limit = h('select', { id: 'f-limit', name: 'limit', value: p.get('limit') || '50' },
    ['20', '50', '100', '200', '500'].map((v) => h('option', { value: v }, v)));
  const newestBtn = h('button', { type: 'button', onclick: () => load(null) }, 'Newest');
  const olderBtn = h('button', { type: 'button', onclick: () => load(nextBefore) }, 'Older');
  const info = h('span', { class: 'muted small' });
  const msg = h('p', { class: 'msg', hidden: true });
  const tbody = h('tbody');
  const detail = h('aside', { class: 'panel', hidden: true, 'aria-label': 'Message details' });
  root.append(h('h1', {}, 'Messages'),
    h('form', { class: 'card filters', onsubmit: (e) => { e.preventDefault(); load(null); } },
      field('Session', f.session), field('Source', f.source), field('Target', f.target), field('Type', f.type),
      field('Status', f.status), field('Limit', f.limit),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search'),
        h('button', { type: 'button', onclick: () => { ['session', 'source', 'target', 'type', 'status'].forEach((k) => { f[k].value = ''; }); load(null); } }, 'Clear'))),
    msg,
    h('div', { class: 'split' },
      h('div', { class: 'split-main' },
        h('div', { class: 'pager' }, newestBtn, olderBtn, info),
        tableWrap(h('table', { class: 'grid' },
          h('thead', {}, h('tr', {}, ['Time', 'ID', 'Session', 'Source', 'Target', 'Type', 'Kind', 'Status'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody))),
      detail));

  let nextBefore = null;
  let selectedId = null;

  async function load(before) {
    const qs = new URLSearchParams();
    for (const k of ['session', 'source', 'target', 'type', 'status', 'limit']) if (f[k].value.trim()) qs.set(k, f[k].value.trim());
    history.replaceState(null, '', `#/messages${qs.toString() ? `?${qs}` : ''}`);
    if (before != null) qs.set('before', before);
    newestBtn.disabled = olderBtn.disabled = true;
    try {
      const data = await api(`/api/messages?${qs}`);
      const list = data.messages || [];
      nextBefore = data.next_before ?? null;
      say(msg, '');
      tbody.replaceChildren(...list.map(rowOf));
      // next_before is set whenever a page is full, so the last "Older" page may be empty.
      if (!list.length) tbody.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, before != null ? 'No older messages.' : 'No messages match.')));
      info.textContent = list.length ? `${list.length} messages, ids ${list[0].id} … ${list[list.length - 1].id}` : '';
      newestBtn.disabled = before == null;
      olderBtn.disabled = nextBefore == null;
    } catch (e) {
      say(msg, `Cannot load messages: ${e.message}`, 'error');
      newestBtn.disabled = false;
    }
  }

  function rowOf(m) {
    return h('tr', {
      class: `${isErr(m) ? 'is-error' : ''} ${m.id === selectedId ? 'selected' : ''}`, 'data-id': m.id,
      onclick: (e) => { if (!e.target.closest('a, button')) open(m.id); },
    },
    h('td', { class: 'nowrap' }, timeEl(m.created)),
    h('td', {}, h('button', { type: 'button', class: 'linkish', 'aria-label': `Open message ${m.id}`, onclick: () => open(m.id) }, m.id)),
    h('td', {}, h('a', { href: traceHref(m.session_id), title: `Visual trace of session ${m.session_id}` }, m.session_id)),
    h('td', {}, m.source), h('td', {}, m.target), h('td', {}, m.type), h('td', {}, m.kind), h('td', {}, statusBadge(m)));
  }

  async function open(id) {
    selectedId = id;
    for (const tr of tbody.rows) tr.classList.toggle('selected', tr.dataset.id === String(id));
    detail.hidden = false;
    detail.replaceChildren(h('p', { class: 'muted' }, `Loading message ${id}…`));
    try {
      const m = await api(`/api/messages/${enc(id)}`);
      detail.replaceChildren(messageDetail(m, () => {
        detail.hidden = true;
        selectedId = null;
        for (const tr of tbody.rows) tr.classList.remove('selected');
      }));
      detail.querySelector('h2').focus({ preventScroll: true });
      if (detail.getBoundingClientRect().top > window.innerHeight) detail.scrollIntoView({ block: 'start' });
    } catch (e) {
      detail.replaceChildren(h('p', { class: 'msg error' }, `Cannot load message ${id}: ${e.message}`));
    }
  }

  load(null);
  if (r.arg) open(r.arg);
}

// ---------------------------------------------------------------- visual trace
function drawTrace(msgs, onSelect) {
  const nameOf = (n) => (n == null || n === '' ? '?' : String(n));
  const names = [];
  for (const m of msgs) for (const n of [m.source, m.target]) if (!names.includes(nameOf(n))) names.push(nameOf(n));
  const label = (m) => `${m.type || '?'} #${m.id}`;
  const widest = Math.max(...names.map((n) => n.length * 7.4 + 24), ...msgs.map((m) => label(m).length * 5.8 + 12));
  const LANE = Math.round(Math.min(280, Math.max(140, widest)));
  const LEFT = 84; const ROW = 32; const BOX = 28; const TOP = 48;
  const bottomBoxes = msgs.length > 12;
  const W = LEFT + names.length * LANE + 10;
  const H = TOP + msgs.length * ROW + (bottomBoxes ? BOX + 18 : 10);
  const xOf = (n) => LEFT + names.indexOf(nameOf(n)) * LANE + LANE / 2;
  const marker = (id, color) => svg('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 9, markerHeight: 9,
    markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: color }));
  const box = (n, y) => svg('g', { class: 'lifeline-box' },
    svg('rect', { x: xOf(n) - (LANE - 20) / 2, y, width: LANE - 20, height: BOX, rx: 4 }),
    svg('text', { x: xOf(n), y: y + BOX / 2 + 4, 'text-anchor': 'middle' }, n));

  const root = svg('svg', { class: 'trace', xmlns: SVG_NS, width: W, height: H, viewBox: `0 0 ${W} ${H}` },
    svg('title', {}, `Sequence diagram of ${msgs.length} messages between ${names.length} items`),
    svg('defs', {}, marker('ah', '#1f2d3d'), marker('ah-err', '#c5221f')),
    svg('text', { x: 8, y: 26, class: 'time' }, 'Time'),
    names.map((n) => svg('line', { class: 'lifeline', x1: xOf(n), x2: xOf(n), y1: 8 + BOX, y2: bottomBoxes ? H - BOX - 8 : H })),
    names.map((n) => box(n, 8)),
    bottomBoxes ? names.map((n) => box(n, H - BOX - 8)) : null);

  msgs.forEach((m, i) => {
    const top = TOP + i * ROW;
    const y = top + 22;
    const x1 = xOf(m.source);
    const x2 = xOf(m.target);
    const err = isErr(m);
    const cls = `arrow ${m.kind === 'reply' ? 'reply' : 'request'}`;
    const mk = `url(#${err ? 'ah-err' : 'ah'})`;
    let shape;
    let lbl;
    if (x1 === x2) { // self-call: small loop to the right of the lifeline
      shape = svg('path', { class: cls, d: `M${x1},${y - 12} h28 v12 h-26`, 'marker-end': mk });
      lbl = svg('text', { class: 'label', x: x1 + 34, y: y - 2 }, label(m));
    } else {
      const dir = x2 > x1 ? 1 : -1;
      shape = svg('line', { class: cls, x1: x1 + dir, y1: y, x2: x2 - dir * 2, y2: y, 'marker-end': mk });
      lbl = svg('text', { class: 'label', x: (x1 + x2) / 2, y: y - 6, 'text-anchor': 'middle' }, label(m));
    }
    const desc = `${m.kind || 'message'} ${label(m)} from ${nameOf(m.source)} to ${nameOf(m.target)}${err ? ', error' : ''}`;
    const g = svg('g', { class: `msg${err ? ' error' : ''}`, tabindex: 0, role: 'button', 'aria-label': desc, 'data-id': m.id },
      svg('title', {}, `${desc}\n${fmtTime(m.created)}`),
      svg('rect', { class: 'hit', x: 0, y: top + 2, width: W, height: ROW - 2 }),
      svg('text', { class: 'time', x: 8, y: y - 4 }, fmtTime(m.created, true)),
      shape, lbl);
    const pick = () => {
      root.querySelectorAll('.msg.selected').forEach((el) => el.classList.remove('selected'));
      g.classList.add('selected');
      onSelect(m);
    };
    g.addEventListener('click', pick);
    g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); } });
    root.append(g);
  });
  return root;
}

async function pageTrace(root, r) {
  const sid = r.arg;
  const input = h('input', { id: 'trace-sid', name: 'session', type: 'text', inputmode: 'numeric', value: sid, size: 8, required: true });
  const msg = h('p', { class: 'msg', hidden: true });
  root.append(h('div', { class: 'page-head' },
    h('h1', {}, sid ? `Visual Trace — session ${sid}` : 'Visual Trace'),
    h('form', { class: 'inline-form', onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) location.hash = traceHref(input.value.trim()); } },
      field('Session id', input), h('button', { type: 'submit' }, 'Open'))), msg);

  if (!sid) { // no session: offer the most recent ones
    try {
      const data = await api('/api/messages?limit=200');
      const seen = new Map();
      const failed = new Set();
      for (const m of data.messages || []) {
        seen.set(m.session_id, m); // newest first, so the oldest message of each session wins
        if (isErr(m)) failed.add(m.session_id);
      }
      const list = [...seen.values()].sort((a, b) => b.session_id - a.session_id).slice(0, 25);
      root.append(h('h2', {}, 'Recent sessions'), list.length
        ? h('ul', { class: 'sessions' }, list.map((m) => h('li', {}, h('a', { href: traceHref(m.session_id) }, `Session ${m.session_id}`),
          ' ', h('span', { class: 'muted' }, `${fmtTime(m.created)} · ${m.source} → ${m.target} · ${m.type}`),
          failed.has(m.session_id) ? [' ', h('span', { class: 'bad' }, '· error')] : null)))
        : h('p', { class: 'muted' }, 'No messages yet.'));
    } catch (e) {
      say(msg, `Cannot load recent sessions: ${e.message}`, 'error');
    }
    return;
  }

  let data;
  try {
    data = await api(`/api/sessions/${enc(sid)}/trace`);
  } catch (e) {
    say(msg, `Cannot load the trace of session ${sid}: ${e.message}`, 'error');
    return;
  }
  const msgs = data.messages || [];
  const events = data.events || [];
  const eventList = events.length ? [h('h2', { class: 'events-title' }, `Events of session ${sid}`), eventTable(events, false)] : null;
  if (!msgs.length) { // purged messages: the session may still have its events
    say(msg, `Session ${sid} has no messages.`, 'warn');
    root.append(...(eventList || []));
    return;
  }
  const errors = msgs.filter(isErr).length;
  const detail = h('aside', { class: 'panel trace-detail', 'aria-label': 'Message details', 'aria-live': 'polite' },
    h('p', { class: 'muted' }, 'Select an arrow to see the message header and body.'));
  const diagram = drawTrace(msgs, (m) => {
    detail.replaceChildren(messageDetail(m));
    if (detail.getBoundingClientRect().top > window.innerHeight) detail.scrollIntoView({ block: 'start' });
  });
  root.append(
    h('p', { class: 'summary' }, `${msgs.length} messages`, errors ? [' · ', h('span', { class: 'bad' }, `${errors} error${errors > 1 ? 's' : ''}`)] : '',
      events.length ? ` · ${events.length} event${events.length > 1 ? 's' : ''}` : '',
      ' · ', h('a', { href: `#/messages?session=${enc(sid)}` }, 'Show in message viewer')),
    h('div', { class: 'trace-layout' }, h('div', { class: 'trace-main' }, h('div', { class: 'trace-scroll' }, diagram), eventList), detail));
}

// ---------------------------------------------------------------- event log
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'alert'];

// Events as a table (newest or oldest first, as given); withSession adds a column linking each
// event's session to its visual trace (the trace page lists one session's events only).
function eventTable(events, withSession = true) {
  const cols = ['Time', 'Level', 'Item', ...(withSession ? ['Session'] : []), 'Text'];
  const rows = events.map((ev) => h('tr', { class: LEVELS.includes(ev.level) ? `lvl-${ev.level}` : '' },
    h('td', { class: 'shrink' }, timeEl(ev.time)),
    h('td', { class: 'shrink' }, h('span', { class: 'level' }, ev.level)),
    h('td', { class: 'shrink' }, ev.item ?? '—'),
    withSession ? h('td', { class: 'shrink' }, ev.session_id != null
      ? h('a', { href: traceHref(ev.session_id), title: `Visual trace of session ${ev.session_id}` }, ev.session_id) : '—') : null,
    h('td', { class: 'log-text' }, ev.text)));
  if (!events.length) rows.push(h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, 'No events match.')));
  return tableWrap(h('table', { class: 'grid log' },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows)));
}

function pageLog(root, r) {
  const p = r.params;
  const level = h('select', { id: 'log-level', name: 'level', value: p.get('level') || '' },
    ['', ...LEVELS].map((l) => h('option', { value: l }, l || 'all')));
  const item = h('input', { id: 'log-item', name: 'item', type: 'search', value: p.get('item') || '', autocomplete: 'off' });
  const limit = h('select', { id: 'log-limit', name: 'limit', value: p.get('limit') || '100' },
    ['50', '100', '200', '500', '1000'].map((v) => h('option', { value: v }, v)));
  const msg = h('p', { class: 'msg', hidden: true });
  const info = h('p', { class: 'muted small' });
  const list = h('div', { class: 'log-list' });
  root.append(h('h1', {}, 'Event Log'),
    h('form', { class: 'card filters', onsubmit: (e) => { e.preventDefault(); load(); } },
      field('Level', level), field('Item', item), field('Limit', limit),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Refresh'))),
    msg, info, list);

  async function load() {
    const qs = new URLSearchParams();
    if (level.value) qs.set('level', level.value);
    if (item.value.trim()) qs.set('item', item.value.trim());
    qs.set('limit', limit.value);
    history.replaceState(null, '', `#/log?${qs}`);
    try {
      const events = (await api(`/api/log?${qs}`)).events || [];
      say(msg, '');
      info.textContent = `${events.length} events${level.value ? ` at level ${level.value}` : ''}, newest first · loaded ${new Date().toLocaleTimeString()}`;
      list.replaceChildren(eventTable(events));
    } catch (e) {
      say(msg, `Cannot load the event log: ${e.message}`, 'error');
    }
  }
  load();
}

// ---------------------------------------------------------------- start
normalizeLocation();
window.addEventListener('hashchange', route);
route();
