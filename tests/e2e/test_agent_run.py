"""``netagent run`` as a process on the host: endpoints, a real scrape, and SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.daemon import (
    AGENT_ENV,
    agent_command,
    default_config,
    fast_config,
    free_port,
    http_get,
    poll,
    running,
)


def test_readyz_flips_to_200_and_sigterm_stops_within_3_s(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(agent_command(port, fast_config(tmp_path / "netagent.yaml")),
                 log=tmp_path / "agent.log", env=AGENT_ENV) as agent:
        poll("/healthz answers", lambda: http_get(base + "/healthz")[0] == 200, timeout=20)
        seen: list[int] = []

        def ready() -> bool:
            seen.append(http_get(base + "/readyz")[0])
            return seen[-1] == 200

        poll("/readyz turns 200", ready, timeout=20, every=0.02)
        # before the first collection of every source it can only have said 503
        assert set(seen) <= {200, 503}, (seen, agent.output())
        assert agent.proc.poll() is None
        started = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)
        code = agent.proc.wait(timeout=10)
        elapsed = time.monotonic() - started
        assert code == 0, agent.output()
        assert elapsed < 3.0, f"stopped after {elapsed:.2f} s"
        assert '"event": "stop"' in agent.output()


def test_a_real_scrape_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package 'prometheus'"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(agent_command(port, fast_config(tmp_path / "netagent.yaml")),
                 log=tmp_path / "agent.log", env=AGENT_ENV) as agent:
        poll("/readyz turns 200", lambda: http_get(base + "/readyz")[0] == 200, timeout=20)
        status, body = http_get(base + "/metrics")
        assert status == 200, agent.output()
        text = body.decode()
        assert 'netagent_source_up{source="neighbours"} 1.0' in text, text
        assert 'netagent_neighbour_gc_thresh{family="ipv4",level="3"}' in text
        proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                              timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_sigint_stops_too(tmp_path: Path) -> None:
    port = free_port()
    with running(agent_command(port, default_config(tmp_path / "netagent.yaml"),
                               log_format="text"), log=tmp_path / "agent.log",
                 env=AGENT_ENV) as agent:
        poll("/healthz answers",
             lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=20)
        agent.proc.send_signal(signal.SIGINT)
        assert agent.proc.wait(timeout=3) == 0, agent.output()
        assert "received SIGINT, stopping" in agent.output()
