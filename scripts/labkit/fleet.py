"""A synthetic fleet in a real Prometheus: netagent's own metric names, backfilled history.

``Fleet`` holds series (name, labels) -> [(unix seconds, value)]; ``write_openmetrics``
prints them as OpenMetrics text, ``backfill`` turns that into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``, and ``prometheus`` serves the blocks on
loopback until the block ends. The node label is ``instance``, as the ServiceMonitor sets it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from labkit.serve import free_port, serving

Labels = tuple[tuple[str, str], ...]
# cumulative buckets of netagent_dns_probe_duration_seconds (exporter/dns.py)
DNS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.5, 5.5,
               10.0)


class Fleet:
    def __init__(self, *, end: float, hours: float = 2.0, step: float = 60.0,
                 job: str = "netagent") -> None:
        self.step = step
        count = int(hours * 3600 / step)
        self.times = [end - (count - k) * step for k in range(count + 1)]
        self.job = job
        self.series: dict[tuple[str, Labels], list[tuple[float, float]]] = {}

    def frac(self, t: float) -> float:
        """0 at the first sample, 1 at the last."""
        return (t - self.times[0]) / (self.times[-1] - self.times[0])

    def add(self, name: str, node: str, value: Callable[[float], float],
            **labels: str) -> None:
        key = (name, tuple(sorted({"instance": node, "job": self.job, **labels}.items())))
        self.series[key] = [(t, float(value(t))) for t in self.times]

    def node(self, node: str, *, ipv4: Callable[[float], float],
             ipv6: Callable[[float], float] = lambda t: 20.0,
             gc_thresh3: float = 1024, conntrack: Callable[[float], float] = lambda t: 1000,
             conntrack_max: float = 262144,
             insert_failed_per_s: float = 0.0, drop_per_s: float = 0.0,
             dns_seconds: Callable[[float], float] = lambda t: 0.002,
             dns_per_step: int = 20, dns_sigma: float = 0.6, peers_missing: float = 0.0,
             cluster_nodes: Callable[[float], float] | None = None,
             statuses: Mapping[str, int] | None = None) -> None:
        """One node running netagent, with every series the fleet view reads."""
        for family, entries, limit in (("ipv4", ipv4, gc_thresh3), ("ipv6", ipv6, 1024)):
            self.add("netagent_neighbour_gc_entries", node, entries, family=family)
            for level, divisor in (("1", 8), ("2", 2), ("3", 1)):
                self.add("netagent_neighbour_gc_thresh", node,
                         _const(limit / divisor), family=family, level=level)
            self.add("netagent_neighbour_table_fulls_total", node, lambda t: 0.0,
                     family=family)
        self.add("netagent_conntrack_entries", node, conntrack)
        self.add("netagent_conntrack_max", node, lambda t: conntrack_max)
        start = self.times[0]
        for event, rate in (("insert_failed", insert_failed_per_s), ("drop", drop_per_s),
                            ("early_drop", 0.0)):
            self.add("netagent_conntrack_events_total", node, _ramp(rate, start),
                     event=event)
        # the probes of a step take log-normal times of median dns_seconds(t): each bucket
        # counts the share of them at or below its bound
        medians = [dns_seconds(t) for t in self.times]
        for le in (*DNS_BUCKETS, math.inf):
            counts: list[float] = []
            total = 0.0
            for median in medians:
                share = 1.0 if le == math.inf else _UNIT.cdf(
                    math.log(le / median) / dns_sigma)
                total += dns_per_step * share
                counts.append(round(total, 3))
            key = ("netagent_dns_probe_duration_seconds_bucket", tuple(sorted({
                "instance": node, "job": self.job, "resolver": "10.96.0.10",
                "protocol": "udp", "mode": "plain",
                "le": "+Inf" if le == math.inf else f"{le:g}"}.items())))
            self.series[key] = list(zip(self.times, counts, strict=True))
        self.add("netagent_overlay_peers_missing", node, lambda t: peers_missing,
                 device="flannel.1")
        for check, status in (statuses or {"neighbour.ipv4": 0, "conntrack.table": 0}).items():
            self.add("netagent_check_status", node, _const(status), check=check)
        if cluster_nodes is not None:
            self.add("netagent_cluster_nodes", node, cluster_nodes)

    def write_openmetrics(self, path: Path) -> Path:
        with path.open("w") as out:
            for (name, labels), points in sorted(self.series.items()):
                text = ",".join(f'{k}="{v}"' for k, v in labels)
                for t, v in points:
                    out.write(f"{name}{{{text}}} {v:.6g} {t:.3f}\n")
            out.write("# EOF\n")
        return path


_UNIT = statistics.NormalDist()


def normal_scores(n: int, mean: float, sd: float, rng: random.Random) -> list[float]:
    """n values spread as a normal sample is expected to be (its quantiles at
    (i + 0.5) / n), in random order: normal noise with no chance extreme, so a test that
    must flag nobody does not depend on a lucky seed."""
    values = [mean + sd * _UNIT.inv_cdf((i + 0.5) / n) for i in range(n)]
    rng.shuffle(values)
    return values


def _const(value: float) -> Callable[[float], float]:
    return lambda t: value


def _ramp(per_second: float, start: float) -> Callable[[float], float]:
    return lambda t: per_second * (t - start)


def promtool() -> str:
    found = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(found):
        raise AssertionError("promtool is missing: install the Debian package 'prometheus'")
    return found


def backfill(fleet: Fleet, workdir: Path) -> Path:
    """TSDB blocks of the fleet in ``workdir/tsdb``."""
    data = workdir / "tsdb"
    data.mkdir(parents=True, exist_ok=True)
    text = fleet.write_openmetrics(workdir / "fleet.om")
    subprocess.run([promtool(), "tsdb", "create-blocks-from", "openmetrics", str(text),
                    str(data)], check=True, capture_output=True, timeout=300)
    return data


@contextlib.contextmanager
def prometheus(data: Path, workdir: Path, *, ready_within: float = 60) -> Iterator[str]:
    """A Prometheus on loopback serving ``data``; yields its URL."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    config = workdir / "prometheus.yml"
    config.write_text("global: {}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving([binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                  f"--web.listen-address=127.0.0.1:{port}",
                  "--storage.tsdb.retention.time=30d"],
                 ready_url=f"{url}/-/ready", within=ready_within,
                 log=workdir / "prometheus.log"):
        yield url


def query(url: str, expr: str) -> list[dict[str, object]]:
    """An instant query, for tests that check what Prometheus holds."""
    with urllib.request.urlopen(f"{url}/api/v1/query?"
                                + urllib.parse.urlencode({"query": expr}), timeout=10) as r:
        result: list[dict[str, object]] = json.load(r)["data"]["result"]
        return result
