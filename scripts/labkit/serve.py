"""Servers the lab starts for a block: a free loopback port, and a process that is ready
(its URL answers 200) before the block runs and is stopped afterwards, whatever happened."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(argv: Sequence[str], *, ready_url: str, within: float = 30.0,
            log: Path | None = None, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until ``ready_url`` answers 200 (``RuntimeError`` if it exits first or
    ``within`` seconds pass), yield it, then SIGTERM it (SIGKILL after 10 s)."""
    out = log.open("wb") if log is not None else None
    proc = subprocess.Popen(list(argv), stdout=out or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
                            env=dict(env) if env is not None else None, cwd=cwd)
    try:
        deadline = time.monotonic() + within
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: {tail}")
            with contextlib.suppress(OSError), urllib.request.urlopen(ready_url,
                                                                      timeout=2) as resp:
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} did not answer within {within} s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if out is not None:
            out.close()
