// Switchboard operator console (issue 19): the admin views of the dashboard page. Plain
// browser JavaScript, no build step; app.js starts it on an admin sign-in (SBConsole.start)
// with its helpers (session-checked API calls, the socket, DOM helpers) and stops it on
// sign-out. A user never gets here, and the admin API answers a user 403 anyway.
//
// Views (tabs): Queues (counts, oldest pending age, a jobs/s sparkline drawn as inline SVG,
// Pause / Resume), Jobs (browse across users by type and state, search by id or user, a job's
// detail, Cancel / Retry), Dead set (Retry and Delete per row, Retry all), Workers (agents
// online by type and department), Event bus (streams, consumer groups, dead letters).
//
// Live data: the gateway emits to the admin sockets that connect with auth {console: true}
// (app.js does) admin:queues (every second), admin:jobs
// (job changes of every user, coalesced per 500 ms) and admin:action (admin_feed.h), and the
// presence events. While the socket is connected nothing is polled: views change on those
// events. While it is down, the visible view and the queues are read again every POLL_MS.
// Destructive actions (cancel, delete, retry all) ask first in an in-page <dialog>.
'use strict';

window.SBConsole = (() => {
  const POLL_MS = 3000;
  const SPARK_POINTS = 60;
  const JOB_ID = /^\d{1,16}-[0-9a-f]{8,32}$/;
  const VIEWS = ['dashboard', 'queues', 'jobs', 'dead', 'workers', 'events'];
  const ACTIVE = new Set(['queued', 'processing', 'retrying']);
  const RETRYABLE = new Set(['dead', 'error', 'failed', 'cancelled']);

  let ctx = null;        // app.js helpers; null while stopped
  let st = null;         // this session's state (reset on every start)
  const $ = (id) => document.getElementById(id);
  const bound = { done: false };

  function fresh() {
    return { view: 'dashboard', types: [], queues: new Map(), rates: new Map(), jobs: new Map(),
      dead: new Map(), next: null, detail: null, workers: [], pollTimer: null, reload: new Map(),
      lastQuery: null };
  }

  // ---- small helpers -----------------------------------------------------------------------

  function announce(text) { $('console-live').textContent = text; }

  function ageText(ms) {
    if (!Number.isFinite(ms)) return '–';
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function td(label, content, cls) {
    const cell = ctx.el('td', { 'data-label': label, class: cls || '' });
    if (content instanceof Node) cell.append(content); else cell.textContent = content ?? '';
    return cell;
  }

  function pill(state) { return ctx.el('span', { class: 'pill', 'data-status': state, text: state }); }

  function button(text, label, onClick, kind) {
    const b = ctx.el('button', { type: 'button', class: `btn small ${kind || ''}`, text });
    b.setAttribute('aria-label', label);
    b.addEventListener('click', onClick);
    return b;
  }

  // Runs a debounced reload of name (a view's loader) at most once per 300 ms.
  function soon(name, fn) {
    if (st.reload.has(name)) return;
    st.reload.set(name, setTimeout(() => { if (st) { st.reload.delete(name); fn(); } }, 300));
  }

  // The in-page confirmation: resolves true when the admin confirms.
  function confirmAction(title, text, yes) {
    const dlg = $('confirm');
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-yes').textContent = yes;
    return new Promise((resolve) => {
      dlg.returnValue = '';
      dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
      dlg.showModal();
      $('confirm-no').focus();
    });
  }

  function fillTypeSelect(sel) {
    const keep = sel.value;
    sel.replaceChildren(...st.types.map((t) => ctx.el('option', { value: t, text: t })));
    if (st.types.includes(keep)) sel.value = keep;
  }

  // ---- views -------------------------------------------------------------------------------

  function show(view) {
    if (!VIEWS.includes(view)) view = 'dashboard';
    st.view = view;
    for (const v of VIEWS) {
      const tab = $(`tab-${v}`);
      const on = v === view;
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      tab.tabIndex = on ? 0 : -1;
      (v === 'dashboard' ? $('app') : $(`view-${v}`)).hidden = !on;
    }
    loadView(view);
  }

  function loadView(view) {
    if (view === 'queues') loadQueues();
    else if (view === 'jobs') loadJobs(false);
    else if (view === 'dead') loadDead();
    else if (view === 'workers') loadWorkers();
    else if (view === 'events') loadEvents();
  }

  function onTabKey(ev) {
    const i = VIEWS.indexOf(ev.target.dataset.view);
    let j = null;
    if (ev.key === 'ArrowRight') j = (i + 1) % VIEWS.length;
    else if (ev.key === 'ArrowLeft') j = (i + VIEWS.length - 1) % VIEWS.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = VIEWS.length - 1;
    if (j === null) return;
    ev.preventDefault();
    show(VIEWS[j]);
    $(`tab-${VIEWS[j]}`).focus();
  }

  // ---- queues ------------------------------------------------------------------------------

  async function loadQueues() {
    const r = await ctx.api('GET', '/admin/queues');
    if (!st || r.stale) return;
    if (!r.ok || !r.json || !Array.isArray(r.json.queues)) {
      $('queues-msg').textContent = `Could not read the queues: ${r.message}`;
      return;
    }
    applyQueues(r.json, false);
  }

  // {queues:[counts...], rates?:{type: jobs/s}} from GET /admin/queues or admin:queues.
  function applyQueues(doc, live) {
    const types = doc.queues.map((q) => q.type);
    const newTypes = types.join() !== st.types.join();
    st.types = types;
    for (const q of doc.queues) st.queues.set(q.type, q);
    if (doc.rates) {
      for (const t of types) {
        const series = st.rates.get(t) || [];
        series.push(Number(doc.rates[t]) || 0);
        while (series.length > SPARK_POINTS) series.shift();
        st.rates.set(t, series);
      }
    }
    if (newTypes) { fillTypeSelect($('ajobs-type')); fillTypeSelect($('dead-type')); }
    $('queues-msg').textContent = types.length ? '' : 'No job type is configured (JOB_TYPES).';
    $('queues-note').textContent = live ? `live · ${ctx.fmtTime(new Date(doc.at || Date.now()).toISOString())}` : '';
    renderQueues();
  }

  function sparkline(series, label) {
    const W = 120, H = 28, max = Math.max(1, ...series);
    const root = ctx.svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'spark', role: 'img', 'aria-label': label });
    if (series.length) { // newest point at the right edge; one point is a short level line
      const step = W / (SPARK_POINTS - 1), pts = series.length > 1 ? series : [series[0], series[0]];
      const x0 = W - step * (pts.length - 1);
      const xy = pts.map((v, i) => `${(x0 + i * step).toFixed(1)},${(H - 2 - ((H - 4) * v) / max).toFixed(1)}`);
      root.append(ctx.svg('polyline', { points: xy.join(' '), class: 'spark-line' }));
    }
    return root;
  }

  function queueRow(q) {
    const c = q.counts || {};
    const rates = st.rates.get(q.type) || [];
    const now = rates.length ? rates[rates.length - 1] : 0;
    const rateCell = ctx.el('span', { class: 'rate' }, sparkline(rates, `${q.type}: ${now.toFixed(1)} jobs per second`),
      ctx.el('span', { class: 'num', text: `${now.toFixed(1)}/s` }));
    const act = q.paused
      ? button('Resume', `Resume ${q.type}`, () => pause(q.type, false))
      : button('Pause', `Pause ${q.type}`, () => pause(q.type, true), 'secondary');
    return ctx.el('tr', { 'data-type': q.type, 'data-paused': q.paused ? 'true' : 'false' },
      td('Type', ctx.el('strong', { text: q.type })),
      td('Pending', ctx.fmtNum(c.queued), 'num'),
      td('Processing', ctx.fmtNum(c.processing), 'num'),
      td('Retrying', ctx.fmtNum(c.retrying), 'num'),
      td('Dead', ctx.fmtNum(c.dead), `num${c.dead ? ' bad' : ''}`),
      td('Paused', q.paused ? pill('paused') : 'no'),
      td('Oldest pending', q.oldestPendingAgeMs === null || q.oldestPendingAgeMs === undefined ? '–' : ageText(q.oldestPendingAgeMs)),
      td('Jobs/s', rateCell),
      td('Actions', act, 'actions'));
  }

  function renderQueues() {
    const focused = document.activeElement && document.activeElement.closest('#queues tr');
    const focusType = focused && focused.dataset.type;
    $('queues').tBodies[0].replaceChildren(...st.types.map((t) => queueRow(st.queues.get(t))));
    if (focusType) { // keep the keyboard where it was across live redraws
      const b = $('queues').querySelector(`tr[data-type="${focusType}"] button`);
      if (b) b.focus();
    }
  }

  async function pause(type, on) {
    const r = await ctx.api('POST', `/admin/queues/${encodeURIComponent(type)}/${on ? 'pause' : 'resume'}`);
    if (!st || r.stale) return;
    if (!r.ok) { announce(`Could not ${on ? 'pause' : 'resume'} ${type}: ${r.message}`); return; }
    const q = st.queues.get(type);
    if (q) q.paused = on;
    renderQueues();
    announce(`${type} ${on ? 'paused' : 'resumed'}`);
  }

  // ---- jobs --------------------------------------------------------------------------------

  // The owner's publicKey: records name it as user.publicKey.
  function owner(j) { return (j.user && j.user.publicKey) || j.userId || '–'; }

  function jobState(entry) { return entry.state || (entry.job && entry.job.status) || '?'; }

  function actionsFor(entry, where) {
    const s = jobState(entry), id = entry.jobId, type = entry.job.type || entry.type;
    const out = [];
    if (where === 'jobs') out.push(button('Details', `Details of job ${id}`, () => openDetail(type, id), 'secondary'));
    if (ACTIVE.has(s)) out.push(button('Cancel', `Cancel job ${id}`, () => cancelJob(type, id), 'danger'));
    if (RETRYABLE.has(s)) out.push(button('Retry', `Retry job ${id}`, () => retryJob(type, id, where)));
    if (where === 'dead') out.push(button('Delete', `Delete job ${id}`, () => deleteJob(type, id), 'danger'));
    return ctx.el('span', { class: 'row-actions' }, ...out);
  }

  // The cells every job table starts with: id, owner, state.
  function idCells(entry) {
    return [td('Job', ctx.el('span', { class: 'mono', text: entry.jobId })),
      td('User', ctx.el('span', { class: 'mono', text: owner(entry.job || {}) })),
      td('State', pill(jobState(entry)))];
  }

  function jobRow(entry) {
    const j = entry.job || {};
    return ctx.el('tr', { 'data-job-id': entry.jobId, 'data-state': jobState(entry) },
      ...idCells(entry),
      td('Attempts', ctx.fmtNum(Number(j.attempts || 0)), 'num'),
      td('Created', ctx.fmtDateTime(j.createdAt)),
      td('Actions', actionsFor({ ...entry, type: $('ajobs-type').value }, 'jobs'), 'actions'));
  }

  function renderJobs() {
    const rows = [...st.jobs.values()].map(jobRow);
    $('ajobs').tBodies[0].replaceChildren(...rows);
    $('ajobs-msg').textContent = rows.length ? '' : 'No job matches.';
    $('ajobs-more').hidden = st.next === null || st.next === undefined;
  }

  // The query the form describes: {type, state, id | user}.
  function jobsQuery() {
    const q = $('ajobs-q').value.trim();
    const p = new URLSearchParams({ type: $('ajobs-type').value, limit: '50' });
    if ($('ajobs-state').value) p.set('state', $('ajobs-state').value);
    if (q && JOB_ID.test(q)) p.set('id', q);
    else if (q) p.set('user', q);
    return p;
  }

  async function loadJobs(more) {
    if (!$('ajobs-type').value) { await loadQueues(); if (!$('ajobs-type').value) return; }
    const p = jobsQuery();
    if (more && st.next) p.set('cursor', String(st.next));
    const r = await ctx.api('GET', `/admin/jobs?${p}`);
    if (!st || r.stale) return;
    if (!r.ok || !r.json) { $('ajobs-msg').textContent = `Could not list jobs: ${r.message}`; return; }
    if (!more) st.jobs.clear();
    for (const e of r.json.jobs || []) st.jobs.set(e.jobId, e);
    st.next = r.json.next;
    st.lastQuery = p.toString();
    $('ajobs-note').textContent = `${st.jobs.size} shown`;
    renderJobs();
  }

  async function openDetail(type, id) {
    const r = await ctx.api('GET', `/admin/jobs/${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
    if (!st || r.stale) return;
    const box = $('job-detail');
    if (!r.ok || !r.json) { announce(`Could not read job ${id}: ${r.message}`); return; }
    st.detail = { type, id };
    renderDetail(r.json);
    box.hidden = false;
    box.focus();
  }

  function renderDetail(d) {
    const j = d.job || {};
    $('detail-title').textContent = `Job ${d.jobId}`;
    const kv = [['Type', j.type || st.detail.type], ['State', d.state], ['User', owner(j)],
      ['Attempts', String(j.attempts ?? 0)], ['Agent', d.agent || '–'],
      ['Created', j.createdAt || '–'], ['Updated', j.updatedAt || '–']];
    $('detail-kv').replaceChildren(...kv.flatMap(([k, v]) => [ctx.el('dt', { text: k }), ctx.el('dd', { text: v, 'data-key': k.toLowerCase() })]));
    $('detail-payload').textContent = JSON.stringify(j.payload ?? null, null, 2);
    const failed = j.error || (d.failure && (d.failure.error || d.failure.message));
    $('detail-outcome-title').textContent = failed ? 'Error' : 'Result';
    $('detail-outcome').textContent = failed ? [j.error, j.details, d.failure ? JSON.stringify(d.failure, null, 2) : ''].filter(Boolean).join('\n')
      : JSON.stringify(j.result ?? null, null, 2);
    $('detail-history').replaceChildren(...(d.history || []).map((h) => ctx.el('li', {},
      ctx.el('time', { text: ctx.fmtDateTime(h.at) }), ' ', pill(h.status), ' ',
      ctx.el('span', { class: 'muted', text: [h.by, h.detail].filter(Boolean).join(' · ') }))));
  }

  async function cancelJob(type, id) {
    if (!(await confirmAction('Cancel this job?', `Job ${id} (${type}) stops now: a running handler is terminated.`, 'Cancel job'))) return;
    const r = await ctx.api('POST', `/admin/jobs/${encodeURIComponent(type)}/${encodeURIComponent(id)}/cancel`);
    if (!st || r.stale) return;
    if (!r.ok) { announce(`Could not cancel ${id}: ${r.message}`); return; }
    setState(id, 'cancelled');
    announce(`Job ${id} cancelled`);
  }

  async function retryJob(type, id) {
    const r = await ctx.api('POST', `/admin/jobs/${encodeURIComponent(type)}/${encodeURIComponent(id)}/retry`);
    if (!st || r.stale) return;
    if (!r.ok) { announce(`Could not retry ${id}: ${r.message}`); return; }
    setState(id, 'queued');
    announce(`Job ${id} queued again`);
  }

  async function deleteJob(type, id) {
    if (!(await confirmAction('Delete this job?', `Job ${id} (${type}), its record and its history are removed for good.`, 'Delete job'))) return;
    const r = await ctx.api('DELETE', `/admin/jobs/${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
    if (!st || r.stale) return;
    if (!r.ok) { announce(`Could not delete ${id}: ${r.message}`); return; }
    st.dead.delete(id);
    st.jobs.delete(id);
    renderDead();
    renderJobs();
    announce(`Job ${id} deleted`);
  }

  // A job's new state, wherever it is shown (jobs list, dead set, open detail).
  function setState(id, state) {
    for (const [map, render] of [[st.jobs, renderJobs], [st.dead, renderDead]]) {
      const e = map.get(id);
      if (e && e.state !== state) { e.state = state; if (e.job) e.job.status = state; render(); }
    }
    if (st.detail && st.detail.id === id && !$('job-detail').hidden) soon('detail', () => openDetailQuiet());
  }

  async function openDetailQuiet() {
    if (!st.detail) return;
    const { type, id } = st.detail;
    const r = await ctx.api('GET', `/admin/jobs/${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
    if (st && r.ok && r.json && st.detail && st.detail.id === id) renderDetail(r.json);
  }

  // ---- dead set ----------------------------------------------------------------------------

  function deadRow(entry) {
    const j = entry.job || {};
    return ctx.el('tr', { 'data-job-id': entry.jobId, 'data-state': jobState(entry) },
      ...idCells(entry),
      td('Error', ctx.el('span', { class: 'outcome err', text: j.error || j.lastError || '–', title: j.details || '' })),
      td('Attempts', ctx.fmtNum(Number(j.attempts || 0)), 'num'),
      td('Failed', ctx.fmtDateTime(j.updatedAt)),
      td('Actions', actionsFor({ ...entry, type: $('dead-type').value }, 'dead'), 'actions'));
  }

  function renderDead() {
    const rows = [...st.dead.values()].map(deadRow);
    $('dead').tBodies[0].replaceChildren(...rows);
    $('dead-msg').textContent = rows.length ? '' : 'No dead job.';
    $('dead-retry-all').disabled = ![...st.dead.values()].some((e) => jobState(e) === 'dead');
  }

  async function loadDead() {
    if (!$('dead-type').value) { await loadQueues(); if (!$('dead-type').value) return; }
    const type = $('dead-type').value;
    const r = await ctx.api('GET', `/admin/jobs?type=${encodeURIComponent(type)}&state=dead&limit=100`);
    if (!st || r.stale) return;
    if (!r.ok || !r.json) { $('dead-msg').textContent = `Could not list dead jobs: ${r.message}`; return; }
    // rows retried from here stay (their state moves on live) until the next full read
    for (const [id, e] of st.dead) if (jobState(e) === 'dead') st.dead.delete(id);
    for (const e of r.json.jobs || []) st.dead.set(e.jobId, e);
    renderDead();
  }

  async function retryAllDead() {
    const type = $('dead-type').value;
    const n = [...st.dead.values()].filter((e) => jobState(e) === 'dead').length;
    if (!(await confirmAction('Retry every dead job?', `Up to 1000 dead ${type} jobs (${n} shown) go back on the queue.`, 'Retry all'))) return;
    const r = await ctx.api('POST', `/admin/queues/${encodeURIComponent(type)}/retry-dead?limit=1000`);
    if (!st || r.stale) return;
    if (!r.ok || !r.json) { announce(`Could not retry: ${r.message}`); return; }
    for (const e of st.dead.values()) if (jobState(e) === 'dead') { e.state = 'queued'; }
    renderDead();
    announce(`${r.json.retried} dead jobs queued again`);
  }

  // ---- workers -----------------------------------------------------------------------------

  async function loadWorkers() {
    const r = await ctx.api('GET', '/admin/workers');
    if (!st || r.stale) return;
    const agents = r.ok && r.json && Array.isArray(r.json.agents) ? r.json.agents : null;
    if (!agents) {
      $('workers').replaceChildren();
      $('workers-msg').textContent = `Could not read the workers: ${r.ok ? 'unexpected answer' : r.message}`;
      $('workers-note').textContent = '';
      return;
    }
    st.workers = agents;
    renderWorkers();
  }

  function workerRow(a, now) {
    const started = Date.parse(a.started_at);
    const beat = Date.parse(a.last_heartbeat);
    const jobs = Array.isArray(a.jobs) ? a.jobs : null;
    return ctx.el('tr', { 'data-agent-id': a.agent_id, 'data-status': a.status || 'online' },
      td('Agent', ctx.el('span', { class: 'mono', text: a.agent_id, title: a.name || '' })),
      td('Host', a.host || '–'),
      td('Status', pill(a.status || 'online')),
      td('Concurrency', ctx.fmtNum(Number(a.max_chats)), 'num'),
      td('Current jobs', jobs ? (jobs.length ? jobs.join(', ') : 'idle') : `${a.current_chats || 0} chats`, 'jobs'),
      td('Uptime', Number.isFinite(started) ? ageText(now - started) : '–'),
      td('Last heartbeat', Number.isFinite(beat) ? `${ageText(Math.max(0, now - beat))} ago` : '–'));
  }

  function renderWorkers() {
    const now = Date.now();
    const groups = new Map();
    for (const a of st.workers) {
      const key = `${a.job_type ? `type ${a.job_type}` : 'people'} · ${a.department || a.department_id || 'no department'}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(a);
    }
    const blocks = [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, list]) =>
      ctx.el('div', { class: 'worker-group', 'data-group': key },
        ctx.el('h3', { text: `${key} (${list.length})` }),
        ctx.el('div', { class: 'table-wrap' }, ctx.el('table', { class: 'stacked workers' },
          ctx.el('thead', {}, ctx.el('tr', {}, ...['Agent', 'Host', 'Status', 'Concurrency', 'Current jobs', 'Uptime', 'Last heartbeat']
            .map((h) => ctx.el('th', { text: h, class: h === 'Concurrency' ? 'num' : '' })))),
          ctx.el('tbody', {}, ...list.map((a) => workerRow(a, now)))))));
    $('workers').replaceChildren(...blocks);
    $('workers-msg').textContent = st.workers.length ? '' : 'No agent is online.';
    $('workers-note').textContent = st.workers.length ? `${st.workers.length} online` : '';
  }

  // ---- event bus ---------------------------------------------------------------------------

  async function loadEvents() {
    const r = await ctx.api('GET', '/admin/events');
    if (!st || r.stale) return;
    if (!r.ok || !r.json || !Array.isArray(r.json.streams)) {
      $('events-msg').textContent = `Could not read the event bus: ${r.message}`;
      return;
    }
    const rows = r.json.streams.map((s) => ctx.el('tr', { 'data-stream': s.name },
      td('Stream', ctx.el('span', { class: 'mono', text: s.name })),
      td('Entries', ctx.fmtNum(s.length), 'num'),
      td('Last id', ctx.el('span', { class: 'mono', text: s.lastId || '–' })),
      td('Consumer groups', s.groups.length ? ctx.el('ul', { class: 'plain' }, ...s.groups.map((g) => ctx.el('li', {
        text: `${g.name}: ${g.consumers} consumer${g.consumers === 1 ? '' : 's'}, ${g.pending} pending${g.lag === null ? '' : `, lag ${g.lag}`}` }))) : 'none'),
      td('Dead letters', s.dead.length ? ctx.el('span', { class: 'bad', text: `${s.dead.length}`,
        title: s.dead.recent.map((d) => `${d.id} ${d.fields.reason || d.fields.error || ''}`).join('\n') }) : '0', 'num')));
    $('streams').tBodies[0].replaceChildren(...rows);
    $('events-msg').textContent = rows.length ? '' : 'No stream on the event bus yet.';
  }

  // ---- live --------------------------------------------------------------------------------

  // admin:jobs {changes:[{type,jobId,status,userId}], more}: every shown row follows.
  function onJobs(d) {
    if (!st || !d) return;
    let deadTouched = false, workersTouched = false;
    for (const c of d.changes || []) {
      setState(c.jobId, c.status === 'error' ? 'error' : c.status);
      if (c.status === 'error' && c.type === $('dead-type').value) deadTouched = true;
      if (c.status === 'processing' || c.status === 'done' || c.status === 'error' || c.status === 'cancelled') workersTouched = true;
    }
    // an error may be final (dead) or a retry: read the view's truth again
    if (deadTouched && st.view === 'dead') soon('dead', loadDead);
    if (workersTouched && st.view === 'workers') soon('workers', loadWorkers);
    if (d.more && st.view === 'jobs') soon('jobs', () => loadJobs(false));
    for (const c of (d.changes || []).slice(0, 3)) announce(`job ${c.jobId} ${c.status}`);
  }

  function onAction(d) {
    if (!st || !d) return;
    ctx.addFeed('admin:action', { jobId: d.jobId || d.type }, [d.action, d.type, d.by].filter(Boolean).join(' · '));
    if (d.jobId && d.action === 'deleted') {
      st.dead.delete(d.jobId); st.jobs.delete(d.jobId); renderDead(); renderJobs();
    } else if (d.jobId) setState(d.jobId, d.action === 'retried' ? 'queued' : 'cancelled');
    if (d.action === 'retried-dead' && st.view === 'dead') soon('dead', loadDead);
  }

  function poll() {
    if (st && st.view === 'workers' && st.workers.length) renderWorkers(); // ages move on
    if (!st || ctx.live()) return;
    loadQueues();
    if (st.view !== 'queues') loadView(st.view);
  }

  function bindOnce() {
    if (bound.done) return;
    bound.done = true;
    for (const v of VIEWS) $(`tab-${v}`).addEventListener('click', () => st && show(v));
    $('tabs').addEventListener('keydown', (ev) => st && onTabKey(ev));
    $('ajobs-form').addEventListener('submit', (ev) => { ev.preventDefault(); if (st) loadJobs(false); });
    $('ajobs-more').addEventListener('click', () => st && loadJobs(true));
    $('ajobs-type').addEventListener('change', () => st && loadJobs(false));
    $('ajobs-state').addEventListener('change', () => st && loadJobs(false));
    $('detail-close').addEventListener('click', () => { $('job-detail').hidden = true; if (st) st.detail = null; });
    $('dead-type').addEventListener('change', () => { if (st) { st.dead.clear(); loadDead(); } });
    $('dead-retry-all').addEventListener('click', () => st && retryAllDead());
    $('events-refresh').addEventListener('click', () => st && loadEvents());
  }

  function start(c, view) {
    stop();
    ctx = c;
    st = fresh();
    bindOnce();
    $('tabs').hidden = false;
    const s = ctx.socket;
    if (s) {
      s.on('admin:queues', (d) => { if (st && d && Array.isArray(d.queues)) applyQueues(d, true); });
      s.on('admin:jobs', onJobs);
      s.on('admin:action', onAction);
      for (const name of ['agent:online', 'agent:offline', 'agent:status'])
        s.on(name, () => { if (st && st.view === 'workers') soon('workers', loadWorkers); });
      s.on('connect', () => { if (st) loadView(st.view); }); // caught up after a gap
    }
    st.pollTimer = setInterval(poll, POLL_MS);
    loadQueues();
    show(view || 'dashboard');
  }

  // Back to the page as loaded: nothing of this admin's session stays.
  function stop() {
    if (!st) return;
    clearInterval(st.pollTimer);
    for (const t of st.reload.values()) clearTimeout(t);
    st = null;
    ctx = null;
    if ($('confirm').open) $('confirm').close();
    $('tabs').hidden = true;
    for (const v of VIEWS) if (v !== 'dashboard') $(`view-${v}`).hidden = true;
    for (const id of ['queues', 'ajobs', 'dead', 'streams']) $(id).tBodies[0].replaceChildren();
    $('workers').replaceChildren();
    for (const id of ['queues-msg', 'queues-note', 'ajobs-msg', 'ajobs-note', 'dead-msg', 'workers-msg', 'workers-note', 'events-msg', 'console-live'])
      $(id).textContent = '';
    for (const id of ['ajobs-type', 'dead-type']) $(id).replaceChildren();
    $('ajobs-q').value = '';
    $('ajobs-state').value = '';
    $('job-detail').hidden = true;
    $('ajobs-more').hidden = true;
    for (const v of VIEWS) {
      $(`tab-${v}`).setAttribute('aria-selected', v === 'dashboard' ? 'true' : 'false');
      $(`tab-${v}`).tabIndex = v === 'dashboard' ? 0 : -1;
    }
  }

  return { start, stop };
})();
