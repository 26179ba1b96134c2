"""The ``netagent`` command: thin click commands over the runner and the agent.

Exit codes follow the Nagios convention: 0 ok, 1 warning, 2 critical, 3 unknown; usage and
configuration errors are 3 with one line naming the problem. Every option can also be set
from the environment as ``NETAGENT_<COMMAND>_<OPTION>`` (click's ``auto_envvar_prefix``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from netagent import __version__
from netagent.config import NODES_RANGE, Config
from netagent.config import load as load_config
from netagent.errors import NetagentError
from netagent.model import Status
from netagent.wiring import SOURCE_NAMES

EXIT_UNKNOWN = int(Status.UNKNOWN)


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    # The parameter is named ``config`` so that the automatic variable is the obvious
    # NETAGENT_CHECK_CONFIG / NETAGENT_RUN_CONFIG; NETAGENT_CONFIG works for every command.
    return click.option(
        "--config", "config", type=click.Path(dir_okay=False), envvar="NETAGENT_CONFIG",
        help="YAML configuration file (thresholds, headroom, resolvers) "
             "[env: NETAGENT_CONFIG].",
    )(func)


def _finite(ctx: click.Context, param: click.Parameter, value: float | None
            ) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", ctx=ctx, param=param)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netagent")
def cli() -> None:
    """Guard the kernel's small network tables on a Kubernetes node."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--only", multiple=True, type=click.Choice(SOURCE_NAMES),
              help="Read only this source (repeatable).")
@config_option
@click.option("--interval", type=click.FloatRange(0, 3600), default=None, callback=_finite,
              help="Seconds between the two samples used for rates [default: 2].")
@click.option("--nodes", type=click.IntRange(*NODES_RANGE), default=None,
              help="Cluster size, when the Kubernetes API cannot be read.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
              help="kubeconfig for the node list [default: KUBECONFIG, else in-cluster].")
@click.option("-v", "--verbose", is_flag=True, help="Show evidence and every fix.")
def check(as_json: bool, only: Sequence[str], config: str | None,
          interval: float | None, nodes: int | None, kubeconfig: str | None,
          verbose: bool) -> None:
    """Check this node's tables now and print a report.

    Exit status: 0 ok, 1 warning, 2 critical, 3 unknown.
    """
    from netagent import runner
    from netagent.report import json as json_report
    from netagent.report import text as text_report
    from netagent.wiring import build_sources

    settings = _config(config, interval=interval, nodes=nodes)
    if kubeconfig is not None:
        import dataclasses

        settings = dataclasses.replace(
            settings, cluster=dataclasses.replace(settings.cluster, kubeconfig=kubeconfig))
    sources = build_sources(settings, only=only)
    _validate_kubeconfig(settings, sources)
    report = runner.check_once(sources, settings, interval=settings.interval)
    if as_json:
        click.echo(json_report.render(report))
    else:
        click.echo(text_report.render(report, verbose=verbose,
                                      colour=sys.stdout.isatty()))
    sys.exit(int(report.status))


@cli.command()
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Address for /metrics, /healthz and /readyz [default: agent.listen, "
                   "0.0.0.0:9465].")
@config_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="One log line per state change, as text or JSON.")
@click.option("--remediate", is_flag=True,
              help="Raise limits before a table is full (remediation.mode: apply).")
def run(listen: str | None, config: str | None, log_format: str, remediate: bool) -> None:
    """Run as a daemon: collect on a schedule and serve Prometheus metrics.

    Stops cleanly on SIGTERM or SIGINT. See it work with `curl -s localhost:9465/metrics`.
    """
    from netagent import agent

    settings = _config(config)
    if remediate:
        import dataclasses

        settings = dataclasses.replace(settings, remediation=dataclasses.replace(
            settings.remediation, mode="apply"))
    agent.setup_logging(log_format)
    agent.serve(settings, listen=listen)


@cli.command()
@click.option("--prometheus", "url", required=True, metavar="URL",
              help="Base URL of the Prometheus HTTP API (Prometheus, Thanos Query, Mimir's "
                   "/prometheus).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--window", default="1h", show_default=True, metavar="DURATION",
              help="History for rates, trends and the node count's growth (30m, 1h, 2d).")
@click.option("--horizon", default="24h", show_default=True, metavar="DURATION",
              help="How far ahead the rolled-out limits must hold.")
@click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True), default=0.05,
              show_default=True, help="Significance level of the outlier test.")
@click.option("--selector", default='{job="netagent"}', show_default=True,
              help="Label matchers added to every query.")
@click.option("--node-label", default="instance", show_default=True,
              help="The label that names the node.")
@click.option("--timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              callback=_finite, help="Seconds each request may take.")
@click.option("--user", default=None, help="Basic-auth user; the password is read from "
              "NETAGENT_PROMETHEUS_PASSWORD.")
@click.option("--bearer-token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding a bearer token.")
@click.option("--ca-file", type=click.Path(dir_okay=False), default=None,
              help="CA bundle that signed the server's certificate.")
@click.option("--insecure-skip-tls-verify", "insecure", is_flag=True,
              help="Do not verify the server's certificate.")
def fleet(url: str, as_json: bool, window: str, horizon: str, alpha: float, selector: str,
          node_label: str, timeout: float, user: str | None, bearer_token_file: str | None,
          ca_file: str | None, insecure: bool) -> None:
    """The odd node and the fleet's headroom, from netagent's series in Prometheus.

    Exit status: 0 ok, 1 outliers or warning nodes, 2 a critical node, 3 Prometheus could
    not be read (or answered nonsense). Needs scipy: pip install 'netagent[fleet]'.
    """
    import os
    import time

    from netagent.fleet import analysis, gather, render, stats
    from netagent.sources.prometheus import PrometheusClient, PrometheusTarget

    try:
        t_isf = stats.student_t_isf()
    except ImportError as err:
        raise NetagentError("netagent fleet needs scipy for the outlier test: "
                            "pip install 'netagent[fleet]'") from err
    try:
        window_s, horizon_s = gather.parse_duration(window), gather.parse_duration(horizon)
        queries = gather.Queries(selector, node_label=node_label, window=window_s,
                                 horizon=horizon_s)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    target = PrometheusTarget(url=url, timeout=timeout, ca_file=ca_file, insecure=insecure,
                              username=user, token_file=bearer_token_file,
                              password=os.environ.get("NETAGENT_PROMETHEUS_PASSWORD"))
    try:
        client = PrometheusClient(target)
        data = gather.gather(client, queries, at=time.time(), window=window_s,
                             horizon=horizon_s)
    except NetagentError as err:
        reason = str(err)
        raise NetagentError(reason if reason.startswith(url.rstrip("/"))
                            else f"{url}: {reason}") from err
    report = analysis.analyse(data, alpha=alpha, t_isf=t_isf)
    if as_json:
        click.echo(render.as_json(report))
    else:
        click.echo(render.text(report, colour=sys.stdout.isatty()))
    sys.exit(int(report.status))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
@click.option("--apply", "do_apply", is_flag=True, help="Act, then print the outcomes.")
@click.option("--rollback", is_flag=True,
              help="Restore every original value netagent changed, remove its nft table "
                   "and its persisted file.")
@click.option("--interval", type=click.FloatRange(0, 3600), default=None, callback=_finite,
              help="Seconds between the two samples (is the kernel refusing entries now?) "
                   "[default: 2].")
def remediate(as_json: bool, config: str | None, do_apply: bool, rollback: bool,
              interval: float | None) -> None:
    """Raise the limits before a table is full: the plan, or with --apply the changes.

    Dry-run by default. Exit status: the plan 0 when nothing is needed, 1 when changes are
    pending; --apply and --rollback 0 when every action succeeded, 2 when one failed.
    """
    import time

    from netagent import __version__ as version
    from netagent import runner
    from netagent.remediation import executor, plan, render
    from netagent.sources import sysctl
    from netagent.wiring import build_sources

    if do_apply and rollback:
        raise click.UsageError("--apply and --rollback are exclusive")
    settings = _config(config, interval=interval)
    r = settings.remediation
    journal = sysctl.read_journal(r)
    if rollback:
        outcomes, _ = executor.rollback(journal, r, now=time.time(), version=version)
        failed = any(o.result == "failed" for o in outcomes)
        if as_json:
            click.echo(render.as_json(plan.Plan(), outcomes))
        else:
            click.echo(render.text(plan.Plan(), outcomes, applied=True)
                       if outcomes else "nothing to roll back")
        sys.exit(2 if failed else 0)
    sources = build_sources(settings, only=["neighbours", "conntrack", "dns"])
    obs, _runs = runner.observe(sources, interval=settings.interval)
    facts = sysctl.read_facts(r, now=time.time())
    the_plan = plan.plan(obs, facts, journal, settings)
    result = None
    if do_apply:
        result, _ = executor.apply(the_plan, journal, r, now=facts.now, version=version)
    if as_json:
        click.echo(render.as_json(the_plan, result))
    else:
        click.echo(render.text(the_plan, result, applied=do_apply))
    if do_apply:
        sys.exit(2 if any(o.result == "failed" for o in result or ()) else 0)
    sys.exit(1 if the_plan.pending else 0)


def _validate_kubeconfig(settings: Config, sources: Mapping[str, Any]) -> None:
    """A kubeconfig named on the command line or in the configuration that cannot be used
    is a usage error (exit 3, one line), not a check result."""
    if "cluster" not in sources or not settings.cluster.kubeconfig:
        return  # and the cluster source's modules are not imported for nothing
    from netagent.errors import ConfigError, SourceError
    from netagent.sources.cluster import ClusterSource

    source = sources.get("cluster")
    if isinstance(source, ClusterSource):
        try:
            source.target()
        except SourceError as err:
            raise ConfigError(str(err)) from err


def _config(path: str | None, **overrides: Any) -> Config:
    import dataclasses

    config = load_config(path)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **changes) if changes else config


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: map every usage or configuration error to exit 3 with one line."""
    try:
        cli.main(args=argv, prog_name="netagent", auto_envvar_prefix="NETAGENT",
                 standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.format_message() if hasattr(err, "format_message") else str(err))
        sys.exit(EXIT_UNKNOWN)
    except click.UsageError as err:
        click.echo(f"netagent: {err.format_message()}", err=True)
        sys.exit(EXIT_UNKNOWN)
    except click.ClickException as err:
        click.echo(f"netagent: {err.format_message()}", err=True)
        sys.exit(EXIT_UNKNOWN)
    except click.Abort:
        click.echo("netagent: aborted", err=True)
        sys.exit(EXIT_UNKNOWN)
    except NetagentError as err:
        click.echo(f"netagent: {err}", err=True)
        sys.exit(EXIT_UNKNOWN)
    sys.exit(0)
