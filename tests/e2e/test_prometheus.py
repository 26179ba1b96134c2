"""A real Prometheus scrapes a real ``netagent run`` and fires the real neighbour alert.

The agent runs as root on the host, so it reads every namespace, including the lab's. The
alert is ``NetagentNeighbourTableNearFull`` from daemonset/alerts.yaml with its ``for``
shortened to 0s; the lab then pushes the IPv4 table past 80% of gc_thresh3 for a few
seconds.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import yaml
from labkit.netlab import Lab

from tests.e2e.daemon import (
    AGENT_ENV,
    ROOT,
    agent_command,
    fast_config,
    free_port,
    http_get,
    poll,
    prometheus_alerts,
    prometheus_query,
    running,
)

ALERT = "NetagentNeighbourTableNearFull"
PROMETHEUS = "/usr/bin/prometheus"


def near_full_rule(path: Path) -> dict[str, Any]:
    """The real rule, with ``for`` 0s so the test needs seconds, not minutes."""
    groups = yaml.safe_load((ROOT / "daemonset" / "alerts.yaml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"] if r.get("alert") == ALERT]
    assert len(rules) == 1, f"{ALERT} not found once in daemonset/alerts.yaml"
    rule = {**rules[0], "for": "0s"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "netagent-e2e", "rules": [rule]}]}))
    return rule


def prometheus_config(path: Path, *, target_port: int, rules: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "netagent",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }))
    return path


def one_value(port: int, query: str) -> float | None:
    result = prometheus_query(port, query)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def alert_states(port: int) -> list[str]:
    return [a["state"] for a in prometheus_alerts(port)
            if a["labels"].get("alertname") == ALERT and a["labels"].get("family") == "ipv4"]


def test_prometheus_scrapes_the_agent_and_the_neighbour_alert_fires(tmp_path: Path) -> None:
    assert Path(PROMETHEUS).exists() or shutil.which("prometheus"), \
        "Prometheus is missing: install the Debian package 'prometheus'"
    agent_port, prom_port = free_port(), free_port()
    rules = tmp_path / "rules.yaml"
    rule = near_full_rule(rules)
    config = prometheus_config(tmp_path / "prometheus.yml", target_port=agent_port,
                               rules=rules)
    prometheus = [shutil.which("prometheus") or PROMETHEUS, f"--config.file={config}",
                  f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}"]
    lab = Lab("agente2e")
    with running(agent_command(agent_port, fast_config(tmp_path / "netagent.yaml")),
                 log=tmp_path / "agent.log", env=AGENT_ENV) as agent, \
            running(prometheus, log=tmp_path / "prometheus.log") as prom:
        try:
            poll("Prometheus ready",
                 lambda: http_get(f"http://127.0.0.1:{prom_port}/-/ready")[0] == 200,
                 timeout=30)
            # the series arrive, with the contract's names and labels
            thresh = poll("gc_thresh3 scraped", lambda: one_value(
                prom_port, 'netagent_neighbour_gc_thresh{family="ipv4",level="3"}'),
                timeout=30)
            poll("source up", lambda: one_value(
                prom_port, 'netagent_source_up{source="neighbours"}') == 1, timeout=30)
            # every source reports up or down, whether or not this host has what it reads
            assert poll("every source", lambda: one_value(
                prom_port, "count(netagent_source_up)") == 5, timeout=30)
            before = one_value(prom_port, 'netagent_neighbour_gc_entries{family="ipv4"}')
            assert before is not None, agent.output()
            assert before < 0.8 * thresh - 50, (
                f"the IPv4 table already holds {before:.0f} of {thresh:.0f} entries: "
                "another lab is filling it; run again when it is gone")
            assert alert_states(prom_port) == [], prometheus_alerts(prom_port)

            # push the table past 80% of gc_thresh3, for a few seconds
            need = math.ceil(0.8 * thresh) + 40 - int(before)
            lab.up(pods=1)
            added, refused = lab.add_neighbours(need, state="stale")
            assert refused == 0, f"{refused} entries refused"
            poll("gc_entries above 80% in Prometheus", lambda: (one_value(
                prom_port, 'netagent_neighbour_gc_entries{family="ipv4"}') or 0)
                > 0.8 * thresh, timeout=30)
            states = poll(f"{ALERT} firing", lambda: "firing" in alert_states(prom_port)
                          and alert_states(prom_port), timeout=60, every=0.5)
            assert states == ["firing"]
            # the agent's own verdict agrees with the alert
            assert poll("check warning", lambda: one_value(
                prom_port, 'netagent_check_status{check="neighbour.ipv4"}') == 1, timeout=30)
            assert added == need and "gc_thresh" in rule["expr"]
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- agent log\n{agent.output()[-3000:]}"
                                 f"\n--- prometheus log\n{prom.output()[-3000:]}") from err
        finally:
            lab.down()
