// Presence end to end (SPEC §5): `switchboard agent` workers appear in `switchboard presence`
// under department `workers`; an agent killed with -9 is announced offline (reason expired) by
// `switchboard presence watch` through keyspace notifications after its TTL; a SIGTERM'd agent
// is announced offline at once (reason explicit). Waits on events, never on fixed sleeps.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { startRedis, startSwitchboard, runSwitchboard, waitFor } = require('./lib/harness');

let redis;
test.before(async () => { redis = await startRedis(); });
test.after(async () => { await redis.stop(); });

test('workers appear in switchboard presence with department workers, and leave it', async () => {
  // heartbeats every second keep a 3 s key: a worker under a loaded ASan build may miss one
  // beat without being taken for dead (with 2 s, worker b was seen expiring on busy machines)
  const env = { REDIS_URL: redis.url, AGENT_STATUS_TTL: '3', HEARTBEAT_INTERVAL: '1' };
  const sub = redis.client();
  const events = [];
  await sub.subscribe('agent:presence');
  sub.on('message', (_c, m) => events.push(JSON.parse(m)));
  const seen = (event, id, reason) => events.find((e) => e.event === event &&
    e.agent.agent_id === id && (!reason || e.reason === reason));

  const a = startSwitchboard(['agent', '--concurrency', '2'], { ...env, AGENT_ID: 'e2e-worker-a' }, 'agent-a');
  const b = startSwitchboard(['agent'], { ...env, AGENT_ID: 'e2e-worker-b' }, 'agent-b');
  const watch = startSwitchboard(['presence', 'watch'], { REDIS_URL: redis.url }, 'watch');
  try {
    await waitFor(() => seen('agent:online', 'e2e-worker-a') && seen('agent:online', 'e2e-worker-b'),
      { what: 'both workers online' });

    const json = await runSwitchboard(['presence', '--json'], { REDIS_URL: redis.url });
    assert.strictEqual(json.code, 0, json.stderr);
    const agents = JSON.parse(json.stdout);
    assert.deepStrictEqual(agents.map((x) => x.agent_id), ['e2e-worker-a', 'e2e-worker-b']);
    for (const x of agents) {
      assert.strictEqual(x.department_id, 'workers');
      assert.strictEqual(x.department, 'workers');
      assert.ok(['online', 'busy'].includes(x.status));
    }
    assert.strictEqual(agents[0].max_chats, 2);

    const text = await runSwitchboard(['presence'], { REDIS_URL: redis.url });
    assert.strictEqual(text.code, 0, text.stderr);
    assert.match(text.stdout, /department workers \(workers\)\n {2}e2e-worker-a .*\n {2}e2e-worker-b /);

    const dept = await runSwitchboard(['presence', 'list', 'workers', '--json'], { REDIS_URL: redis.url });
    assert.strictEqual(JSON.parse(dept.stdout).length, 2);
    const stats = await runSwitchboard(['presence', 'stats', '--json'], { REDIS_URL: redis.url });
    const st = JSON.parse(stats.stdout);
    assert.strictEqual(st.total, 2);
    assert.strictEqual(st.departments.length, 1);
    assert.strictEqual(st.departments[0].department_id, 'workers');
    assert.strictEqual(st.departments[0].total, 2);
    const one = await runSwitchboard(['presence', 'agent', 'e2e-worker-b'], { REDIS_URL: redis.url });
    assert.strictEqual(one.code, 0);
    assert.strictEqual(JSON.parse(one.stdout).agent_id, 'e2e-worker-b');
    const bad = await runSwitchboard(['presence', 'agent', 'bad*id'], { REDIS_URL: redis.url });
    assert.strictEqual(bad.code, 2);

    // heartbeats stop: the watcher turns the key's expiry into agent:offline (expired)
    a.kill('SIGKILL');
    await a.exited;
    await waitFor(() => seen('agent:offline', 'e2e-worker-a', 'expired'),
      { what: 'agent:offline (expired) for the killed worker', timeoutMs: 20000 });
    // the watcher prints it on its own schedule: wait for its line, do not assume it is there
    await waitFor(() => /"reason":"expired"/.test(watch.output), { what: 'the watcher printing the expiry' });
    const after = JSON.parse((await runSwitchboard(['presence', '--json'], { REDIS_URL: redis.url })).stdout);
    assert.deepStrictEqual(after.map((x) => x.agent_id), ['e2e-worker-b']);

    // graceful stop: explicit offline at once
    b.kill('SIGTERM');
    assert.deepStrictEqual(await b.exited, { code: 0, signal: null });
    await waitFor(() => seen('agent:offline', 'e2e-worker-b', 'explicit'), { what: 'explicit offline' });
    const none = await runSwitchboard(['presence'], { REDIS_URL: redis.url });
    assert.match(none.stdout, /no agent online/);
    assert.strictEqual(events.filter((e) => e.event === 'agent:offline').length, 2);
  } finally {
    for (const p of [a, b, watch]) p.kill('SIGKILL');
    sub.disconnect();
  }
});
