#!/usr/bin/python3
"""End-to-end test of the observability pack (issue 19) on a private redis-server with the real
gateway, agents and an event consumer:

- every metric name the Grafana dashboard (deploy/grafana/switchboard.json) and the alerting
  rules (deploy/prometheus/alerts.yml) use is in what the binaries' /metrics serve — the names
  are parsed out of the expressions, there is no list kept by hand;
- values: the queue depth gauge equals the jobs queued while no agent runs, the oldest age
  grows, the paused gauge follows `switchboard queue pause / resume`, a failed job is counted
  in the agent's duration histogram (status="failed"), the dead and agents-online gauges, the
  event consumer's seed 003 metrics;
- every /metrics output passes `promtool check metrics`;
- LOG_FORMAT=json: every log line is one JSON object with time, level, component, instance and
  message, the instance id is build_info's instance_id, one info line per job accepted and per
  job finished; a bad LOG_FORMAT exits 2."""
import json
import os
import re
import subprocess
import sys
import unittest
import urllib.request

import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import sbpy  # noqa: E402
from sbpy import ROOT, SB_BIN, wait_for  # noqa: E402

E = None
PORTS = {}

# ---- metric names out of PromQL ---------------------------------------------------------------

PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan", "Inf", "NaN"}


def metric_names(expr):
    """The metric names a PromQL expression (Grafana's variables allowed) selects: identifiers
    left once strings, label matchers, ranges and grouping clauses are removed, that are not
    functions (followed by '('), keywords, numbers' exponents or $variables."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    s = re.sub(r"label_values\(\s*([^,)]+?)\s*(,[^)]*)?\)", r" \1 ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        before = s[m.start() - 1] if m.start() else " "
        if before in "$0123456789." or m.group(0) in PROMQL_WORDS:
            continue
        if s[m.end():].lstrip().startswith("("):
            continue  # a function
        names.add(m.group(0))
    return names


def dashboard_exprs(path):
    """Every query of the dashboard: panel targets (rows' nested panels too) and variables."""
    with open(path) as f:
        d = json.load(f)
    out = []

    def panels(ps):
        for p in ps:
            out.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            panels(p.get("panels", []))
    panels(d["panels"])
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        out.append(q["query"] if isinstance(q, dict) else q)
    return [e for e in out if e]


def alert_exprs(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


# ---- scraping ----------------------------------------------------------------------------------

def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def samples(text):
    """{(name, ((label, value)...sorted)): value} of every sample, by the official parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(port, name, **labels):
    """The sample's value on port's /metrics, or None when absent."""
    return samples(scrape(port)).get((name, tuple(sorted(labels.items()))))


def wait_value(port, name, want, **labels):
    """Waits until the sample equals want (the gateway refreshes its queue gauges off the loop,
    so a scrape may show the previous read); returns it."""
    got = []

    def ok():
        try:
            got[:] = [value(port, name, **labels)]
        except OSError as e:  # not listening yet
            got[:] = [repr(e)]
        return got[0] == want
    wait_for(ok, f"{name}{labels} == {want} on :{port} (last {got})")
    return got[0]


def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    return p.returncode, p.stdout + p.stderr


class ObservabilityTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        global E
        E = sbpy.Env()
        for k in ("gw", "report_agent", "rebalance_agent", "consumer"):
            PORTS[k] = sbpy.free_port()
        E.start([SB_BIN, "gateway", "--port", str(PORTS["gw"]), "--bind", "127.0.0.1",
                 "--job-types", "rebalance,report"], log=E.path("gateway.log"),
                JWT_SECRET="s" * 32, LOG_FORMAT="json")

        def ready():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['gw']}/readyz") as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(ready, "the gateway to be ready")

    @classmethod
    def tearDownClass(cls):
        E.close()

    def test_1_queue_gauges_without_agents(self):
        gw = PORTS["gw"]
        wait_value(gw, "switchboard_queue_depth", 0.0, type="rebalance")
        self.assertEqual(value(gw, "switchboard_agents_online", type="rebalance"), 0.0)
        for _ in range(3):
            E.sb("enqueue", "--type", "rebalance", '{"amount":1000}')
        wait_value(gw, "switchboard_queue_depth", 3.0, type="rebalance")
        self.assertEqual(value(gw, "switchboard_queue_depth", type="report"), 0.0)
        self.assertEqual(value(gw, "switchboard_queue_processing", type="rebalance"), 0.0)
        wait_for(lambda: (value(gw, "switchboard_queue_oldest_age_seconds", type="rebalance")
                          or 0) > 0, "the oldest job's age to grow")
        self.assertEqual(value(gw, "switchboard_queue_oldest_age_seconds", type="report"), 0.0)
        # pause / resume by the CLI (another process): the gauge follows
        wait_value(gw, "switchboard_queue_paused", 0.0, type="rebalance")
        E.sb("queue", "pause", "--type", "rebalance")
        wait_value(gw, "switchboard_queue_paused", 1.0, type="rebalance")
        self.assertEqual(value(gw, "switchboard_queue_paused", type="report"), 0.0)
        E.sb("queue", "resume", "--type", "rebalance")
        wait_value(gw, "switchboard_queue_paused", 0.0, type="rebalance")

    def test_2_agents_failed_and_done_jobs(self):
        gw, rep, reb = PORTS["gw"], PORTS["report_agent"], PORTS["rebalance_agent"]
        E.start([SB_BIN, "agent", "--type", "report", "--exec", "exit 3", "--max-attempts", "1",
                 "--metrics-port", str(rep), "--bind", "127.0.0.1"],
                log=E.path("report_agent.log"), LOG_FORMAT="json")
        wait_value(gw, "switchboard_agents_online", 1.0, type="report")
        E.sb("enqueue", "--type", "report", '{"n":1}')
        wait_value(rep, "agent_jobs_processed_total", 1.0, status="failed")
        # the failed job is in the duration histogram, under status="failed"
        self.assertEqual(value(rep, "agent_job_duration_seconds_count", status="failed"), 1.0)
        self.assertEqual(value(rep, "agent_job_duration_seconds_count", status="done"), 0.0)
        self.assertEqual(value(rep, "agent_job_duration_seconds_bucket", status="failed",
                               le="+Inf"), 1.0)
        wait_value(gw, "switchboard_queue_dead", 1.0, type="report")
        # the three rebalance jobs queued before run once an agent of that type starts
        E.start([SB_BIN, "agent", "--type", "rebalance", "--metrics-port", str(reb), "--bind",
                 "127.0.0.1"], log=E.path("rebalance_agent.log"), LOG_FORMAT="json")
        wait_value(reb, "agent_jobs_processed_total", 3.0, status="done")
        self.assertEqual(value(reb, "agent_job_duration_seconds_count", status="done"), 3.0)
        wait_value(gw, "switchboard_queue_depth", 0.0, type="rebalance")
        wait_value(gw, "switchboard_agents_online", 1.0, type="rebalance")
        wait_value(gw, "switchboard_presence_agents_online", 2.0, department_id="workers",
                   department="workers")

    def test_3_event_consumer(self):
        port = PORTS["consumer"]
        E.start([SB_BIN, "events", "consume", "task.created", "--exec", "cat >/dev/null",
                 "--metrics-port", str(port), "--bind", "127.0.0.1"],
                log=E.path("consumer.log"), LOG_FORMAT="json")

        wait_value(port, "events_processed_total", 0.0, event_type="task.created",
                   status="success")
        for i in range(2):
            E.sb("events", "publish", "task.created", json.dumps({"task_id": f"t{i}"}))
        wait_value(port, "events_processed_total", 2.0, event_type="task.created",
                   status="success")
        self.assertEqual(value(port, "events_processed_total", event_type="task.created",
                               status="error"), 0.0)
        self.assertEqual(value(port, "event_processing_seconds_count",
                               event_type="task.created"), 2.0)

    def test_4_every_metric_used_exists_and_outputs_are_valid(self):
        texts = {k: scrape(PORTS[k]) for k in ("gw", "report_agent", "rebalance_agent",
                                                "consumer")}
        served = set()
        for k, text in texts.items():
            rc, out = promtool_check(text)
            self.assertEqual(rc, 0, f"promtool check metrics on {k}:\n{out}")
            served |= {name for name, _ in samples(text)}
            # every process shows the process families and its build
            for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                         "process_open_fds", "process_max_fds", "process_start_time_seconds",
                         "switchboard_build_info"):
                self.assertIn(name, {n for n, _ in samples(text)}, f"{name} on {k}")
        dash = os.path.join(ROOT, "deploy/grafana/switchboard.json")
        rules = os.path.join(ROOT, "deploy/prometheus/alerts.yml")
        for path, exprs in ((dash, dashboard_exprs(dash)), (rules, alert_exprs(rules))):
            used = set().union(*(metric_names(e) for e in exprs))
            self.assertGreaterEqual(len(used), 6, f"names parsed out of {path}: {used}")
            missing = sorted(used - served)
            self.assertEqual(missing, [], f"{path} uses metrics no binary serves")

    def test_4a_the_name_parser(self):
        # the check above is only as good as this: it must find the names, and only them
        self.assertEqual(metric_names(
            'histogram_quantile(0.95, sum by (le, status) (rate(a_bucket{x=~"5.."}[$__rate_interval])))'
            ' / on (instance) group_left (version) b_total offset 5m > bool 1e3 unless c'),
            {"a_bucket", "b_total", "c"})
        self.assertEqual(metric_names("label_values(switchboard_queue_depth, type)"),
                         {"switchboard_queue_depth"})
        self.assertEqual(metric_names('max by (type) (x{type=~"$type"}) == 0'), {"x"})

    def test_5_json_logs(self):
        # one job through the gateway: its "job queued" line
        token = E.sb("token", "--role", "user", "--public-key", "PK-obs",
                     JWT_SECRET="s" * 32).stdout.strip()
        req = urllib.request.Request(
            f"http://127.0.0.1:{PORTS['gw']}/api/v1/agent/rebalance", method="POST",
            data=b'{"amount":1000}', headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            job_id = json.loads(r.read())["jobId"]
        def ran():
            with open(E.path("rebalance_agent.log")) as f:
                return job_id in f.read()
        wait_for(ran, "the job to run")
        gw_build = [dict(lab) for (n, lab) in samples(scrape(PORTS["gw"]))
                    if n == "switchboard_build_info"]
        self.assertEqual(len(gw_build), 1)
        instance = gw_build[0]["instance_id"]
        self.assertRegex(instance, r"^[0-9a-f]{12}$")
        logs = {}
        for name in ("gateway", "report_agent", "rebalance_agent", "consumer"):
            with open(E.path(f"{name}.log")) as f:
                lines = [ln for ln in f.read().splitlines() if ln]
            objs = [json.loads(ln) for ln in lines]  # every line is one JSON object
            for o in objs:
                self.assertEqual(set(o), {"time", "level", "component", "instance", "message"})
            self.assertEqual(len({o["instance"] for o in objs}), 1, name)
            logs[name] = objs
        self.assertEqual(logs["gateway"][0]["instance"], instance)
        self.assertNotEqual(logs["report_agent"][0]["instance"], instance)
        queued = [o for o in logs["gateway"] if o["message"].startswith("job queued")]
        self.assertEqual(len(queued), 1, "one line per job the gateway accepted")
        self.assertIn(f"job={job_id}", queued[0]["message"])
        self.assertEqual(queued[0]["level"], "info")
        self.assertEqual(queued[0]["component"], "gateway")
        done = [o for o in logs["rebalance_agent"]
                if re.match(r"job \S+ done in \d+ ms", o["message"])]
        self.assertEqual(len(done), 4)
        self.assertIn(job_id, done[-1]["message"])
        self.assertTrue(all(o["level"] == "info" for o in done))
        failed = [o for o in logs["report_agent"]
                  if re.match(r"job \S+ failed in \d+ ms", o["message"])]
        self.assertEqual(len(failed), 1)

    def test_6_bad_log_format_exits_2(self):
        p = E.sb("queue", check=False, LOG_FORMAT="xml")
        self.assertEqual(p.returncode, 2)
        self.assertIn("LOG_FORMAT='xml'", p.stderr)
        p = E.sb("queue", "--log-format", "JSON", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("expected text or json", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
