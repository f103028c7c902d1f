// The operator console (issue 19) in a real headless Chromium (Debian `chromium`, driven by
// playwright-core) against a real redis-server, a gateway and real agents (the built-in
// `rebalance` one and an `--exec` one for `report`): an admin opens /#token=… (the fragment
// leaves the address bar), sees the running agents in Workers, finds another user's dead job in
// the dead set, presses its Retry button and sees it run to `done` live (no HTTP read of jobs
// meanwhile: the row follows admin:jobs over Socket.IO); cancels a running `--exec` job from the
// Jobs view through the confirmation dialog, and the handler process is gone; Pause / Resume;
// a job's detail; the tabs work from the keyboard; a user sees no console. Screenshots of every
// view at 1280 and 390 px go next to the binary and into the temp directory, and at 390 px
// nothing is wider than the window.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const { chromium } = require('playwright-core');
const { SB_BIN, startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('./lib/harness');

const SECRET = 'e2e-console-secret';
const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
const SHOT_DIRS = [path.dirname(SB_BIN), os.tmpdir()];
const VIEWS = ['dashboard', 'queues', 'jobs', 'dead', 'workers', 'events'];
let redis, gw, rebalancer, reporter, base, browser, profile, dir, env;

const tokenFor = (pk, role) => jwt.sign({ sub: `sub-${pk}`, publicKey: pk, role }, SECRET,
  { algorithm: 'HS256', expiresIn: '1h' });
const ADMIN = tokenFor('console-admin', 'admin');
const BOB = tokenFor('console-bob', 'user');

// The --exec handler: "sleep" jobs write their pid and sleep until cancelled; "flaky" jobs fail
// for good (exit 65: dead) until the test creates {dir}/{jobId}.ok; the others are done.
function script(d) {
  return 'read -r job; case "$job" in ' +
    `*'"sleep":true'*) echo $$ > ${d}/$SB_JOB_ID.pid; exec sleep 60;; ` +
    `*'"flaky":true'*) if [ -e ${d}/$SB_JOB_ID.ok ]; then echo '{"ok":true}'; else echo flaky >&2; exit 65; fi;; ` +
    '*) echo \'{"ok":true}\';; esac';
}

async function api(method, p, token = ADMIN, body) {
  const r = await fetch(`${base}/api/v1${p}`, { method, headers: { authorization: `Bearer ${token}`,
    ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

async function submit(token, payload) {
  const r = await api('POST', '/agent/report', token, payload);
  assert.strictEqual(r.status, 202, r.text);
  return r.json.jobId;
}

const stateOf = async (id) => (await api('GET', `/admin/jobs/report/${id}`)).json?.state;
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };

// A page signed in as the admin by opening /#token=… (the way `switchboard up` links it).
async function adminPage(width = 1280) {
  const page = await browser.newPage({ viewport: { width, height: 860 } });
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  // failed requests by URL (the console's "Failed to load resource" names none); /dev/token is
  // 404 outside development mode by design
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().endsWith('/api/v1/dev/token')) page.problems.push(`${r.status()} ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) page.problems.push(`console: ${m.text()}`);
  });
  await page.goto(`${base}/#token=${ADMIN}`);
  await page.locator('#tabs').waitFor({ state: 'visible' });
  assert.strictEqual(await page.evaluate(() => location.hash), '', 'the token left the address bar');
  assert.ok(!(await page.evaluate(() => location.href)).includes(ADMIN), 'nor is it anywhere in the URL');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 15000 });
  return page;
}

async function openView(page, view) {
  await page.click(`#tab-${view}`);
  assert.strictEqual(await page.getAttribute(`#tab-${view}`, 'aria-selected'), 'true');
}

// Says what the page shows when a wait fails, so a failure explains itself.
async function explain(page, sel, e) {
  e.message += `\nannounced: ${await page.textContent('#console-live').catch(() => '?')}`;
  e.message += `\n${sel}: ${await page.locator(sel).evaluate((n) => n.outerHTML.slice(0, 3000)).catch(() => 'none')}`;
  throw e;
}

test.before(async () => {
  redis = await startRedis();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-console-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  env = { REDIS_URL: redis.url };
  gw = startSwitchboard(['gateway'], { ...env, JWT_SECRET: SECRET, PORT: String(port), BIND: '127.0.0.1',
    JOB_TYPES: 'rebalance,report', RATE_LIMIT: '1000' }, 'gateway');
  await gw.waitForOutput(/listening on/);
  rebalancer = startSwitchboard(['agent'], env, 'agent-rebalance');
  reporter = startSwitchboard(['agent', '--type', 'report', '--concurrency', '2', '--grace', '1',
    '--exec', script(dir)], env, 'agent-report');
  await rebalancer.waitForOutput(/online/);
  await reporter.waitForOutput(/online/);
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
});

test.after(async () => {
  if (browser) await browser.close();
  for (const p of [reporter, rebalancer, gw]) if (p && p.exitCode === null) { p.kill('SIGTERM'); await p.exited; }
  await redis.stop();
  for (const d of [profile, dir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

test('workers: the running agents, with host, concurrency, uptime and their job in hand', async () => {
  const page = await adminPage();
  await openView(page, 'workers');
  const row = page.locator(`#workers tr[data-agent-id][data-status]`).filter({ hasText: os.hostname() });
  await row.first().waitFor({ timeout: 10000 }).catch((e) => explain(page, '#view-workers', e));
  assert.strictEqual(await page.textContent('#workers-msg'), '', 'never "No agent is online" while agents run');
  const groups = await page.locator('#workers .worker-group').evaluateAll((n) => n.map((g) => g.dataset.group));
  assert.deepStrictEqual(groups, ['type rebalance · workers', 'type report · workers']);
  const report = page.locator('[data-group="type report · workers"] tbody tr');
  assert.strictEqual(await report.count(), 1);
  assert.match(await report.locator('td[data-label="Concurrency"]').textContent(), /^2$/);
  assert.match(await report.locator('td[data-label="Uptime"]').textContent(), /\d+ (s|min)/);
  assert.match(await report.locator('td[data-label="Last heartbeat"]').textContent(), /ago$/);
  assert.strictEqual(await report.locator('td[data-label="Current jobs"]').textContent(), 'idle');
  // a job in hand shows up live (admin:jobs), with no reload by the test
  const id = await submit(BOB, { sleep: true, n: 'workers' });
  await page.waitForSelector(`[data-group="type report · workers"] td[data-label="Current jobs"]:text("${id}")`, { timeout: 15000 })
    .catch((e) => explain(page, '#view-workers', e));
  assert.strictEqual((await api('POST', `/admin/jobs/report/${id}/cancel`)).status, 200);
  // the dashboard's "Online agents" panel lists the same workers (it was empty once)
  await openView(page, 'dashboard');
  await page.waitForSelector('#agents [data-department="workers"] li[data-agent-id]');
  assert.strictEqual(await page.locator('#agents [data-department="workers"] li').count(), 2);
  assert.strictEqual(await page.textContent('#agents-msg'), '');
  assert.deepStrictEqual(page.problems, []);
  await page.close();
});

test("dead set: another user's dead job, Retry in its row, runs to done live", async () => {
  const id = await submit(BOB, { flaky: true });
  await waitFor(async () => (await stateOf(id)) === 'dead', { what: `job ${id} dead` });
  const page = await adminPage();
  await openView(page, 'dead');
  await page.selectOption('#dead-type', 'report');
  const row = page.locator(`#dead tr[data-job-id="${id}"]`);
  await row.waitFor({ timeout: 10000 }).catch((e) => explain(page, '#view-dead', e));
  assert.strictEqual(await row.getAttribute('data-state'), 'dead');
  assert.strictEqual(await row.locator('td[data-label="User"]').textContent(), 'console-bob');
  assert.match(await row.locator('td[data-label="Error"]').textContent(), /exit|flaky|65/);
  fs.writeFileSync(path.join(dir, `${id}.ok`), '');
  // from now on the row may only change through the socket: count the page's job reads
  const reads = [];
  page.on('request', (r) => { if (/\/api\/v1\/(admin\/jobs|agent\/report\/)/.test(r.url()) && r.method() === 'GET') reads.push(r.url()); });
  const retry = row.getByRole('button', { name: `Retry job ${id}` });
  await retry.focus(); // a real button: the keyboard presses it
  await page.keyboard.press('Enter');
  await page.waitForSelector(`#dead tr[data-job-id="${id}"][data-state="done"]`, { timeout: 20000 })
    .catch((e) => explain(page, '#view-dead', e));
  assert.strictEqual(await stateOf(id), 'done');
  assert.deepStrictEqual(reads, [], 'the row followed admin:jobs, not HTTP reads');
  assert.match(await page.textContent('#console-live'), new RegExp(`${id}|queued`), 'announced to screen readers');
  assert.deepStrictEqual(page.problems, []);
  await page.close();
});

test('jobs: cancel a running --exec job from the page; its handler process is gone', async () => {
  const id = await submit(BOB, { sleep: true, n: 'cancel' });
  const pidFile = path.join(dir, `${id}.pid`);
  const pid = await waitFor(() => fs.existsSync(pidFile) && Number(fs.readFileSync(pidFile, 'utf8')), { what: 'the handler to start' });
  assert.ok(alive(pid));
  const page = await adminPage();
  await openView(page, 'jobs');
  await page.selectOption('#ajobs-type', 'report');
  await page.selectOption('#ajobs-state', 'processing');
  await page.fill('#ajobs-q', 'console-bob');
  await page.click('#ajobs-search');
  const row = page.locator(`#ajobs tr[data-job-id="${id}"]`);
  await row.waitFor().catch((e) => explain(page, '#view-jobs', e));
  assert.strictEqual(await row.getAttribute('data-state'), 'processing');
  // the detail: payload, attempts, history, agent
  await row.getByRole('button', { name: `Details of job ${id}` }).click();
  await page.locator('#job-detail').waitFor();
  assert.match(await page.textContent('#detail-payload'), /"sleep": true/);
  assert.strictEqual(await page.textContent('#detail-kv dd[data-key="user"]'), 'console-bob');
  const holder = (await api('GET', '/admin/workers')).json.agents.find((a) => a.job_type === 'report').agent_id;
  assert.strictEqual(await page.textContent('#detail-kv dd[data-key="agent"]'), holder, 'the agent running it');
  assert.ok(await page.locator('#detail-history li').count() >= 2, 'queued and processing in the history');
  // Cancel asks first; "Keep" changes nothing
  await row.getByRole('button', { name: `Cancel job ${id}` }).click();
  await page.locator('#confirm').waitFor();
  await page.click('#confirm-no');
  assert.strictEqual(await stateOf(id), 'processing');
  await row.getByRole('button', { name: `Cancel job ${id}` }).click();
  await page.click('#confirm-yes');
  await page.waitForSelector(`#ajobs tr[data-job-id="${id}"][data-state="cancelled"]`).catch((e) => explain(page, '#view-jobs', e));
  await waitFor(() => !alive(pid), { what: `handler pid ${pid} to exit` });
  assert.strictEqual(await stateOf(id), 'cancelled');
  await page.waitForSelector(`#detail-history li .pill[data-status="cancelled"]`);
  assert.deepStrictEqual(page.problems, []);
  await page.close();
});

test('queues: counts, oldest pending, live jobs/s; Pause and Resume; keyboard tabs', async () => {
  const page = await adminPage();
  await openView(page, 'queues');
  const row = page.locator('#queues tr[data-type="report"]');
  await row.waitFor();
  assert.deepStrictEqual(await page.locator('#queues tbody tr').evaluateAll((n) => n.map((r) => r.dataset.type)), ['rebalance', 'report']);
  await page.waitForSelector('#queues-note:text("live")', { timeout: 10000 }); // admin:queues arrived
  await row.getByRole('button', { name: 'Pause report' }).click();
  await page.waitForSelector('#queues tr[data-type="report"][data-paused="true"]');
  // an agent's take already waiting may take one more job each (jobctl.h): 3 jobs leave one
  const ids = [];
  for (const n of [1, 2, 3]) ids.push(await submit(BOB, { n: `while paused ${n}` }));
  await page.waitForFunction(() => /\d/.test(document.querySelector('#queues tr[data-type="report"] td[data-label="Oldest pending"]').textContent), null, { timeout: 10000 })
    .catch((e) => explain(page, '#queues', e));
  assert.ok(Number(await row.locator('td[data-label="Pending"]').textContent()) >= 1);
  await row.getByRole('button', { name: 'Resume report' }).click();
  for (const id of ids) await waitFor(async () => (await stateOf(id)) === 'done', { what: 'the jobs after resume' });
  await page.waitForSelector('#queues tr[data-type="report"][data-paused="false"] td[data-label="Pending"]:text("0")', { timeout: 10000 });
  assert.strictEqual(await row.locator('svg.spark').count(), 1);
  // the tablist from the keyboard: arrows move between views
  await page.focus('#tab-queues');
  await page.keyboard.press('ArrowRight');
  assert.strictEqual(await page.evaluate(() => document.activeElement.id), 'tab-jobs');
  assert.ok(await page.locator('#view-jobs').isVisible());
  await page.keyboard.press('Home');
  assert.ok(await page.locator('#app').isVisible());
  assert.deepStrictEqual(page.problems, []);
  await page.close();
});

test('a user gets no console; the admin API answers 403', async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/#token=${BOB}`);
  await page.locator('#app').waitFor({ state: 'visible' });
  assert.ok(await page.locator('#tabs').isHidden());
  assert.strictEqual((await api('GET', '/admin/queues', BOB)).status, 403);
  assert.strictEqual((await api('GET', '/admin/workers', BOB)).status, 403);
  await page.close();
});

test('screenshots of every view at 1280 and 390 px; nothing overflows at 390 px', async () => {
  // something in every view: a dead job, an event stream with a group and a dead letter
  const dead = await submit(BOB, { flaky: true });
  await waitFor(async () => (await stateOf(dead)) === 'dead', { what: 'a dead job' });
  // and an event stream whose consumer group dead-letters what it cannot handle
  const evType = 'console.demo';
  assert.strictEqual((await runSwitchboard(['events', 'publish', evType, '{"n":1}'], env)).code, 0);
  const consumer = startSwitchboard(['events', 'consume', evType, '--exec', 'exit 1', '--max-deliveries', '1',
    '--min-idle-ms', '50', '--block-ms', '100', '--from', '0'], env, 'consume');
  try {
    await waitFor(async () => (await api('GET', '/admin/events')).json.streams.find((s) => s.type === evType)?.dead.length >= 1,
      { what: 'a dead letter' });
  } finally { consumer.kill('SIGTERM'); await consumer.exited; }
  const page = await adminPage();
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 860 });
    for (const view of VIEWS) {
      await openView(page, view);
      if (view === 'dead') { await page.selectOption('#dead-type', 'report'); await page.waitForSelector(`#dead tr[data-job-id="${dead}"]`); }
      if (view === 'jobs') { await page.selectOption('#ajobs-type', 'report'); await page.waitForSelector('#ajobs tbody tr'); }
      if (view === 'workers') await page.waitForSelector('#workers tr[data-agent-id]');
      if (view === 'queues') await page.waitForSelector('#queues tbody tr');
      if (view === 'events') {
        const row = page.locator(`#streams tr[data-stream="agent:stream:${evType}"]`);
        await row.waitFor();
        assert.match(await row.locator('td[data-label="Consumer groups"]').textContent(), /^agent-group: \d+ consumers?, \d+ pending/);
        assert.strictEqual(await row.locator('td[data-label="Dead letters"]').textContent(), '1');
      }
      for (const d of SHOT_DIRS) await page.screenshot({ path: path.join(d, `console-${view}-${width}.png`), fullPage: true });
      if (width === 390) {
        const w = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(w <= 390, `${view} at 390 px is ${w} px wide`);
      }
    }
  }
  assert.deepStrictEqual(page.problems, []);
  await page.close();
});
