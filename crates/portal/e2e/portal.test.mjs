// End-to-end test of the Management Portal in headless Chromium, against a real
// production (started by scripts/portal-e2e with the formation items, PostgresOperation
// disabled, testing enabled). Env: PORTAL_URL (http://host:port/portal), SCREENSHOT_DIR.
// The tests run in order and share one browser page, like an operator's session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const PORTAL_URL = (process.env.PORTAL_URL || '').replace(/\/+$/, '');
const SHOTS = process.env.SCREENSHOT_DIR || 'portal-screenshots';
const ORIGIN = PORTAL_URL ? new URL(PORTAL_URL).origin : '';
const TIMEOUT = 10_000;
/** Per test: a hung page fails its test instead of the whole run. */
const LIMIT = { timeout: 30_000 };

const ITEMS = {
  ServiceCSV: { kind: 'service', state: 'running', light: 'ok' },
  RestService: { kind: 'service', state: 'running', light: 'ok' },
  Router: { kind: 'process', state: 'running', light: 'ok' },
  FileOperation: { kind: 'operation', state: 'running', light: 'ok' },
  IrisOperation: { kind: 'operation', state: 'running', light: 'ok' },
  PostgresOperation: { kind: 'operation', state: 'disabled', light: 'off' },
};
const FORMATION = { id: 4242, nom: 'E2E Playwright', salle: 'B12' };

let browser;
let page;
/** Uncaught page errors, console errors and failed API calls, across every page. */
const problems = [];
/** The session of the test send of (b), traced in (b). */
let sessionId;
/** The session sent while FileOperation was disabled in (e), found again in the log in (d). */
let skippedSession;

function watch(p, label) {
  p.on('pageerror', (e) => problems.push(`${label}: uncaught ${e.name}: ${e.message}`));
  p.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${label}: console error: ${m.text()} (${m.location().url || '?'})`);
  });
  p.on('requestfailed', (r) => problems.push(`${label}: request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  p.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${label}: HTTP ${r.status()} on ${r.request().method()} ${r.url()}`);
  });
  p.setDefaultTimeout(TIMEOUT);
  return p;
}

async function shot(p, name, fullPage = false) {
  await p.screenshot({ path: join(SHOTS, name), fullPage });
}

/** The card of an item on the production page. */
const card = (p, name) => p.locator('button.item').filter({ has: p.locator('.item-name').getByText(name, { exact: true }) });

/** Call the management API directly (setup and cross-checks, not what is under test). */
async function api(path, body) {
  const res = await fetch(`${ORIGIN}${path}`, body === undefined ? {} : {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const data = await res.json();
  assert.ok(res.ok, `${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

before(async () => {
  assert.ok(PORTAL_URL, 'PORTAL_URL is not set (run scripts/portal-e2e)');
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = watch(await context.newPage(), 'desktop');
});

after(async () => {
  await browser?.close();
});

test('(a) production page: six items in their columns with status lights', LIMIT, async () => {
  await page.goto(PORTAL_URL);
  await page.locator('button.item').nth(5).waitFor();
  assert.equal(await page.locator('button.item').count(), 6);
  await page.locator('.prod-state .light.ok', { hasText: 'running' }).waitFor();
  for (const [name, want] of Object.entries(ITEMS)) {
    const c = card(page, name);
    assert.equal(await c.count(), 1, `one card for ${name}`);
    const column = await c.evaluate((el) => el.closest('section.column').getAttribute('aria-labelledby'));
    assert.equal(column, `col-${want.kind}`, `${name} in the ${want.kind} column`);
    const light = c.locator('.light');
    assert.equal((await light.textContent()).trim(), want.state, `${name} label`);
    assert.ok((await light.getAttribute('class')).split(' ').includes(want.light), `${name} light is ${want.light}`);
  }
  assert.ok(await card(page, 'PostgresOperation').evaluate((el) => el.classList.contains('is-disabled')));
  assert.equal(await page.locator('h1').textContent(), 'PortalE2E');
  assert.doesNotMatch(await page.locator('.columns').innerText(), /\b(null|undefined|NaN)\b/, 'no missing field rendered');
  await shot(page, 'production.png');
});

test('(b) test page: send a FormationRequest to Router, then its visual trace', LIMIT, async () => {
  await page.getByRole('link', { name: 'Test', exact: true }).click();
  await page.waitForURL(/#\/test/);
  const itemSel = page.locator('#test-item');
  await itemSel.locator('option[value="Router"]').waitFor({ state: 'attached' });
  await itemSel.selectOption('Router');
  await page.locator('#test-type').selectOption('FormationRequest');
  const example = JSON.parse(await page.locator('#test-body').inputValue());
  assert.ok(example.formation, `example body of FormationRequest: ${JSON.stringify(example)}`);
  await page.locator('#test-body').fill(JSON.stringify({ formation: FORMATION }, null, 2));
  await page.getByRole('button', { name: 'Send' }).click();

  const result = page.locator('.result .card');
  await result.locator('h2', { hasText: 'Reply:' }).waitFor();
  assert.equal(await result.locator('h2 code').textContent(), 'FormationResponse');
  const reply = JSON.parse(await result.locator('pre.json').textContent());
  assert.equal(reply.id, FORMATION.id);
  assert.deepEqual([...reply.stored_in].sort(), ['FileOperation', 'IrisOperation']);
  assert.deepEqual(reply.skipped, ['PostgresOperation']);
  await shot(page, 'test.png');

  const link = result.getByRole('link', { name: /visual trace of session \d+/ });
  sessionId = Number((await link.textContent()).match(/session (\d+)/)[1]);
  await link.click();
  await page.waitForURL(new RegExp(`#/trace/${sessionId}$`));
  const diagram = page.locator('svg.trace');
  await diagram.waitFor();

  // Lifelines: one per party, test source first, named in their header boxes.
  const names = await diagram.locator('g.lifeline-box text').allTextContents();
  assert.deepEqual(names, ['TestingService', 'Router', 'FileOperation', 'IrisOperation']);
  assert.equal(await diagram.locator('line.lifeline').count(), 4);
  const laneX = {};
  for (const [i, n] of names.entries()) laneX[n] = Number(await diagram.locator('line.lifeline').nth(i).getAttribute('x1'));

  // Arrows: 3 requests (solid) and 3 replies (dashed), each from its source's lifeline to its target's.
  const requests = diagram.locator('g.msg .arrow.request');
  const replies = diagram.locator('g.msg .arrow.reply');
  assert.equal(await requests.count(), 3, 'request arrows');
  assert.equal(await replies.count(), 3, 'reply arrows');
  assert.equal(await diagram.locator('g.msg').count(), 6);
  for (const a of await requests.all()) assert.equal(await a.evaluate((el) => getComputedStyle(el).strokeDasharray), 'none');
  for (const a of await replies.all()) assert.notEqual(await a.evaluate((el) => getComputedStyle(el).strokeDasharray), 'none');
  const expected = [
    ['request', 'FormationRequest', 'TestingService', 'Router'],
    ['request', 'FormationRequest', 'Router', 'FileOperation'],
    ['reply', 'FormationStored', 'FileOperation', 'Router'],
    ['request', 'TrainingIrisRequest', 'Router', 'IrisOperation'],
    ['reply', 'TrainingIrisResponse', 'IrisOperation', 'Router'],
    ['reply', 'FormationResponse', 'Router', 'TestingService'],
  ];
  for (const [i, [kind, type, from, to]] of expected.entries()) {
    const g = diagram.locator('g.msg').nth(i);
    const label = await g.getAttribute('aria-label');
    assert.match(label, new RegExp(`^${kind} ${type} #\\d+ from ${from} to ${to}$`), `arrow ${i}`);
    const line = g.locator('line.arrow');
    const [x1, x2] = [Number(await line.getAttribute('x1')), Number(await line.getAttribute('x2'))];
    assert.ok(Math.abs(x1 - laneX[from]) <= 3 && Math.abs(x2 - laneX[to]) <= 3, `arrow ${i} spans ${from} -> ${to}: ${x1} -> ${x2}`);
  }
  assert.match(await page.locator('.summary').textContent(), /^6 messages/);

  // Select the Router -> IrisOperation request: its header and body show beside the diagram.
  await diagram.locator('g.msg', { has: page.locator('title', { hasText: 'TrainingIrisRequest' }) }).click();
  const detail = page.locator('.trace-detail');
  await detail.locator('h2', { hasText: /^Message \d+$/ }).waitFor();
  const row = (k) => detail.locator('tr', { has: page.locator('th', { hasText: k }) }).locator('td');
  assert.equal(await row('Type').textContent(), 'TrainingIrisRequest');
  assert.equal(await row('Source').textContent(), 'Router');
  assert.equal(await row('Target').textContent(), 'IrisOperation');
  const body = JSON.parse(await detail.locator('pre.json').textContent());
  assert.deepEqual(body, { training: { id: FORMATION.id, name: FORMATION.nom, room: FORMATION.salle } });
  await shot(page, 'trace.png');

  // The same trace through a path URL (/portal/trace/N is rewritten to the hash route).
  await page.goto(`${PORTAL_URL}/trace/${sessionId}`);
  await page.locator('svg.trace g.msg').nth(5).waitFor();
  assert.ok(page.url().endsWith(`/portal/#/trace/${sessionId}`), page.url());
});

test('(c) messages page: pages with next_before, filter by target, open one', LIMIT, async () => {
  // Four more sessions (6 messages each) so that there are 30 messages: two pages of 20.
  for (let i = 1; i <= 4; i += 1) {
    await api('/api/items/Router/test', { type: 'FormationRequest', body: { formation: { ...FORMATION, id: FORMATION.id + i } } });
  }
  const total = (await api('/api/messages?limit=1000')).messages.length;
  assert.equal(total, 30);

  await page.getByRole('link', { name: 'Messages', exact: true }).click();
  await page.waitForURL(/#\/messages/);
  const rows = page.locator('.page-messages tbody tr[data-id]');
  await page.locator('#f-limit').selectOption('20');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction(() => document.querySelectorAll('.page-messages tbody tr[data-id]').length === 20);
  const firstIds = (await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.id))));
  assert.deepEqual(firstIds, [...firstIds].sort((a, b) => b - a), 'newest first');
  const older = page.getByRole('button', { name: 'Older' });
  assert.ok(await older.isEnabled(), 'a full page has an older page');
  await older.click();
  await page.waitForFunction(() => document.querySelectorAll('.page-messages tbody tr[data-id]').length === 10);
  const secondIds = await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.id)));
  assert.ok(Math.max(...secondIds) < Math.min(...firstIds), 'the older page has only older ids');
  assert.ok(await older.isDisabled(), 'the last page has no older page');
  assert.ok(await page.getByRole('button', { name: 'Newest' }).isEnabled());

  await page.locator('#f-target').fill('IrisOperation');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('.page-messages tbody tr[data-id]')];
    return trs.length === 5 && trs.every((tr) => tr.cells[4].textContent === 'IrisOperation');
  });
  assert.ok(page.url().includes('target=IrisOperation'), page.url());
  const types = await rows.evaluateAll((trs) => trs.map((tr) => tr.cells[5].textContent));
  assert.deepEqual([...new Set(types)], ['TrainingIrisRequest']);

  const first = rows.first();
  const id = await first.getAttribute('data-id');
  await first.getByRole('button', { name: `Open message ${id}` }).click();
  const detail = page.locator('.page-messages aside.panel');
  await detail.locator('h2', { hasText: `Message ${id}` }).waitFor();
  const body = JSON.parse(await detail.locator('pre.json').textContent());
  assert.deepEqual(body, { training: { id: FORMATION.id + 4, name: FORMATION.nom, room: FORMATION.salle } });
  assert.equal(await first.getAttribute('class').then((c) => c.includes('selected')), true);
  await shot(page, 'messages.png');
});

test('(e) production page: disable FileOperation, its trace skips it, then enable it again', LIMIT, async () => {
  await page.getByRole('link', { name: 'Production', exact: true }).click();
  const c = card(page, 'FileOperation');
  await c.waitFor();
  await c.click();
  const panel = page.locator('aside.item-panel');
  await panel.locator('h2', { hasText: 'FileOperation' }).waitFor();
  const button = (name) => panel.getByRole('button', { name, exact: true });
  assert.ok(await button('Enable').isDisabled(), 'an enabled item cannot be enabled');
  await button('Disable').click();
  await c.locator('.light.off', { hasText: 'disabled' }).waitFor();
  await panel.locator('.msg.ok', { hasText: 'FileOperation: disable done.' }).waitFor();
  assert.ok(await c.evaluate((el) => el.classList.contains('is-disabled')));
  assert.equal((await panel.locator('.item-state .light').textContent()).trim(), 'disabled');
  assert.ok(await button('Enable').isEnabled());
  assert.ok(await button('Disable').isDisabled());
  assert.ok(await button('Restart').isDisabled(), 'the API refuses to restart a disabled item');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.act), 'enable', 'focus moves to Enable');
  const head = await panel.evaluate((el) => [...el.children].filter((c) => !c.matches('table, ul, h3')).map((c) => c.innerText).join('\n'));
  assert.doesNotMatch(head, /\b(null|undefined|NaN)\b/, 'no missing field rendered in the item panel');
  assert.match(head, /0 restarts\s+0 alerts/);
  const item = (p) => p.items.find((i) => i.name === 'FileOperation');
  assert.equal(item(await api('/api/production')).state, 'disabled');
  // Survives the 2 s poll.
  await page.waitForTimeout(2300);
  assert.equal((await c.locator('.light').textContent()).trim(), 'disabled');
  await shot(page, 'disabled.png');

  // While it is disabled the Router skips it, and says so in the session's events.
  skippedSession = (await api('/api/items/Router/test', { type: 'FormationRequest', body: { formation: { ...FORMATION, id: 4300 } } })).session_id;

  await button('Enable').click();
  await c.locator('.light.ok', { hasText: 'running' }).waitFor();
  assert.ok(!(await c.evaluate((el) => el.classList.contains('is-disabled'))));
  const back = item(await api('/api/production'));
  assert.equal(back.state, 'running');
  assert.equal(back.enabled, true);

  await page.goto(`${PORTAL_URL}/#/trace/${skippedSession}`);
  const diagram = page.locator('svg.trace');
  await diagram.waitFor();
  assert.deepEqual(await diagram.locator('g.lifeline-box text').allTextContents(), ['TestingService', 'Router', 'IrisOperation']);
  assert.equal(await diagram.locator('g.msg').count(), 4);
  const events = page.locator('.trace-main table.log tbody tr');
  assert.equal(await events.count(), 1);
  assert.deepEqual(await events.first().locator('td').allTextContents().then((t) => t.slice(1)),
    ['trace', 'Router', 'FileOperation is disabled: skipped']);
  assert.match(await page.locator('.summary').textContent(), /^4 messages · 1 event/);
  await shot(page, 'trace-events.png');
});

test('(d) event log page: lists the production events, filters by item and level', LIMIT, async () => {
  await page.getByRole('link', { name: 'Event Log', exact: true }).click();
  await page.waitForURL(/#\/log/);
  const rows = page.locator('.page-log tbody tr');
  await page.locator('.page-log td.log-text', { hasText: 'production started' }).waitFor();
  assert.ok(await rows.count() >= 11, 'start-up events of the production and its items, then (e)\'s');
  const levels = await page.locator('.page-log .level').allTextContents();
  for (const l of levels) assert.ok(['trace', 'debug', 'info', 'warn', 'error', 'alert'].includes(l), `level ${l}`);
  assert.ok(await page.locator('.page-log td', { hasText: 'started (1 x op-file)' }).count() >= 1);

  await page.locator('#log-item').fill('FileOperation');
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('.page-log tbody tr')];
    return trs.length > 0 && trs.every((tr) => tr.cells[2].textContent === 'FileOperation')
      && trs.some((tr) => tr.cells[4].textContent === 'disabled');
  });
  await page.locator('#log-item').fill('');
  await page.locator('#log-level').selectOption('info');
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('.page-log tbody tr')];
    return trs.length >= 10 && trs.every((tr) => tr.classList.contains('lvl-info'));
  });
  // The trace-level event of (e) links to its session's trace.
  await page.locator('#log-level').selectOption('trace');
  await page.getByRole('button', { name: 'Refresh' }).click();
  const skipped = page.locator('.page-log tbody tr.lvl-trace', { hasText: 'FileOperation is disabled: skipped' });
  await skipped.waitFor();
  assert.equal(await skipped.locator('td a').textContent(), String(skippedSession));
  await page.locator('#log-level').selectOption('');
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.locator('.page-log tbody tr.lvl-trace').waitFor();
  await page.locator('.page-log tbody tr.lvl-info').first().waitFor();
  await shot(page, 'log.png');
  await skipped.locator('td a').click();
  await page.waitForURL(new RegExp(`#/trace/${skippedSession}$`));
  await page.locator('svg.trace g.msg').nth(3).waitFor();
});

test('(g) narrow viewport: the production page fits 420 px', LIMIT, async () => {
  const context = await browser.newContext({ viewport: { width: 420, height: 900 } });
  const narrow = watch(await context.newPage(), 'narrow');
  try {
    await narrow.goto(PORTAL_URL);
    await narrow.locator('button.item').nth(5).waitFor();
    await narrow.locator('.light', { hasText: 'running' }).first().waitFor();
    const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 420, `no horizontal scrolling (page is ${width} px wide)`);
    // One column: the cards stack and each fits the viewport.
    for (const b of await narrow.locator('button.item').all()) {
      const box = await b.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 420, `card inside the viewport: ${JSON.stringify(box)}`);
    }
    await shot(narrow, 'narrow.png', true);
  } finally {
    await context.close();
  }
});

test('(f) no uncaught errors, console errors or failed requests in any page', LIMIT, () => {
  assert.deepEqual(problems, []);
});
