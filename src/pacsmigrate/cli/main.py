"""The ``pacsmigrate`` command: parse, build one ``Migration``, call it, print.

No migration logic lives here (STYLE.md: thin shells).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from pacsmigrate import __version__
from pacsmigrate.app import Migration, RunResult
from pacsmigrate.assess.render import findings_table
from pacsmigrate.config import CONFIG_FILE, load_config, render_config
from pacsmigrate.endpoints.dimse import Timeouts
from pacsmigrate.endpoints.factory import open_endpoint
from pacsmigrate.errors import EXIT_CODES, ConfigError, PacsmigrateError
from pacsmigrate.report.report import summary_table

__all__ = ["app", "main"]

T = TypeVar("T")
_EPILOG = "Exit codes: " + "; ".join(f"{code} = {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="pacsmigrate",
    help="Migrate a PACS to another PACS and prove that nothing was lost or changed.",
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages are quoted by tests and scripts
_state: dict[str, Any] = {"project": Path("."), "overrides": {}}


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn user-facing errors into a message and an exit code, without a traceback."""
    try:
        yield
    except PacsmigrateError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to resume", 130)


def _configure_logging(verbose: int, log_phi: bool) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err, show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    # pynetdicom repeats our own error messages at ERROR; keep it quiet unless -vv.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose > 1 else logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # pydicom warns about the data it reads (bad charsets, odd values): inventory records
    # those as findings, so they only reach the terminal with -vv.
    if verbose < 2:
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    if not log_phi:  # request URLs carry query values (patient names, IDs) at DEBUG
        for name in ("urllib3", "dicomweb_client", "requests"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if log_phi:
        logging.getLogger("pacsmigrate").info("PHI in logs is turned on (--log-phi)")


@contextmanager
def _migration(**overrides: Any) -> Iterator[Migration]:
    with _user_errors():
        config = load_config(
            _state["project"],
            {**_state["overrides"], **overrides},
            require_file=not (overrides.get("source.url") and overrides.get("target.url")),
        )
        migration = Migration(config)
        try:
            yield migration
        finally:
            migration.close()


@app.callback()
def _main(
    project: Annotated[
        Path, typer.Option("--project", "-C", help="Project folder (holds pacsmigrate.toml)")
    ] = Path("."),
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for DEBUG)")
    ] = 0,
    log_phi: Annotated[
        bool, typer.Option("--log-phi", help="Allow patient data in logs (off by default)")
    ] = False,
) -> None:
    _state["project"] = project
    _state["overrides"] = {"logging.phi": True} if log_phi else {}
    _configure_logging(verbose, log_phi)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Project folder to create")],
    source: Annotated[
        str, typer.Option(help="Source URL, e.g. dimse://OLDPACS@10.0.0.5:104?calling=PACSMIGRATE")
    ],
    target: Annotated[
        str,
        typer.Option(
            help="Target URL, e.g. dimse://NEWPACS@10.0.0.6:104 (may wait: inventory and"
            " assess need only the source)"
        ),
    ] = "",
    ae_title: Annotated[
        str, typer.Option(help="Our AE title (the C-MOVE destination)")
    ] = "PACSMIGRATE",
    port: Annotated[int, typer.Option(help="Port of our Storage SCP")] = 11112,
    ledger: Annotated[
        str | None, typer.Option(help="Ledger URL (default: SQLite in the folder)")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing pacsmigrate.toml")] = False,
) -> None:
    """Write a commented pacsmigrate.toml into DIRECTORY."""
    with _user_errors():
        for url in (source, target):
            if url:
                open_endpoint(url, calling_ae=ae_title, timeouts=Timeouts())
        path = directory / CONFIG_FILE
        if path.exists() and not force:
            raise ConfigError(f"{path} exists; pass --force to overwrite it")
        values: dict[str, Any] = {
            "source.url": source,
            "target.url": target,
            "local.ae_title": ae_title,
            "local.port": port,
        }
        if ledger:
            values["ledger.url"] = ledger
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(render_config(values), encoding="utf-8")
        load_config(directory)  # what we wrote must load
    out.print(f"wrote {path}")


def _stage(label: str, call: Callable[[], T]) -> T:
    with _user_errors(), out.status(f"{label}..."):
        return call()


@app.command()
def preflight() -> None:
    """C-ECHO both ends and C-MOVE one instance to our own Storage SCP."""
    with _migration() as m:
        result = _stage("preflight", m.preflight)
    probe = "received" if result.probe_received else "skipped (source holds no study)"
    out.print(
        f"preflight ok: source {result.source}, target {result.target}, probe instance {probe}"
    )


@app.command()
def inventory(
    full: Annotated[
        bool,
        typer.Option(help="Query the series and images of unchanged studies too"),
    ] = False,
) -> None:
    """List every study, series and instance of the source in the ledger.

    A dimse:// or dicomweb source is queried (capped answers are split until
    complete); a file:// source is walked, reading headers only. Run it again
    at any time: it adds what is new and says what changed.
    """
    with _migration() as m:
        summary = _stage("inventory", lambda: m.inventory(full=full))
    data = summary.as_dict()
    files = f"{data['files']} files, " if data["files"] else ""
    out.print(
        f"inventory: {files}{data['studies']} studies ({data['studies_new']} new,"
        f" {data['studies_changed']} changed, {data['studies_reopened']} reopened),"
        f" {data['series']} series, {data['instances']} instances ({data['instances_new']} new)"
    )
    if data["slices_split"]:
        out.print(f"  {data['queries']} study queries; {data['slices_split']} capped answers split")
    if data["findings"]:
        out.print(f"  {data['findings']} findings recorded: run 'pacsmigrate assess' to see them")


@app.command()
def assess(
    throughput: Annotated[
        float | None,
        typer.Option(help="Instances per second for the duration estimate (default: measured)"),
    ] = None,
    retention_years: Annotated[
        int | None, typer.Option(help="Report studies older than this many years")
    ] = None,
    probe: Annotated[
        bool, typer.Option(help="Ask the target which SOP classes and syntaxes it accepts")
    ] = True,
    show_phi: Annotated[
        bool, typer.Option(help="Show patient IDs and names in the findings")
    ] = False,
) -> None:
    """Data-quality findings and the catalogue report (HTML with plots, CSV, JSON)."""
    overrides = {"assess.throughput": throughput, "assess.retention_years": retention_years}
    with _migration(**overrides) as m:
        result = _stage("assess", lambda: m.assess(probe=probe, show_phi=show_phi))
    out.print(findings_table(result.assessment))
    for note in result.assessment.notes:
        out.print(f"  {note}")
    names = ("assessment.html", "findings.csv", "catalogue.csv", "assessment.json")
    out.print("assessment: " + "\n            ".join(str(result.paths[n]) for n in names))


@app.command()
def migrate(
    workers: Annotated[int | None, typer.Option(help="Studies in flight at once")] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="Queue failed and quarantined studies again")
    ] = False,
) -> None:
    """Retrieve, spool, hash and store every queued study (resumable)."""
    with _migration(**{"migrate.workers": workers}) as m:
        summary = _stage("migrate", lambda: m.migrate(retry_failed=retry_failed))
    parts = (
        ", ".join(f"{n} {state}" for state, n in sorted(summary.outcomes.items()))
        or "nothing to do"
    )
    out.print(f"migrate: {parts}")
    if summary.outcomes.get("failed") or summary.outcomes.get("quarantined"):
        raise typer.Exit(1)


@app.command()
def verify(
    recheck: Annotated[bool, typer.Option(help="Check verified studies again too")] = False,
) -> None:
    """Check that the target holds every expected SOP Instance UID."""
    with _migration() as m:
        summary = _stage("verify", lambda: m.verify(recheck=recheck))
    out.print(
        f"verify: {summary.verified} studies verified, {summary.incomplete} incomplete"
        f" ({summary.missing_instances} instances missing, queued again)"
    )
    if summary.incomplete:
        raise typer.Exit(1)


def _print_report(result: RunResult) -> None:
    out.print(summary_table(result.report))
    out.print(f"report: {result.html_path}\n        {result.json_path}")


@app.command()
def report(
    show_phi: Annotated[bool, typer.Option(help="Include patient IDs in the report")] = False,
) -> None:
    """Write the JSON and HTML reports and print the summary."""
    with _migration() as m:
        result = _stage("report", lambda: m.report(show_phi=show_phi))
    _print_report(result)
    if not result.complete:
        raise typer.Exit(1)


@app.command()
def status() -> None:
    """Studies per state, from the ledger."""
    with _migration() as m, _user_errors():
        counts = m.status()
    table = Table(title="studies by state")
    table.add_column("state")
    table.add_column("studies", justify="right")
    for state, count in counts.items():
        table.add_row(state, str(count))
    out.print(table)


@app.command()
def run(
    workers: Annotated[int | None, typer.Option(help="Studies in flight at once")] = None,
    skip_preflight: Annotated[bool, typer.Option(help="Do not run preflight first")] = False,
) -> None:
    """preflight, inventory, assess, migrate, verify and report, in order (resumable)."""
    with _migration(**{"migrate.workers": workers}) as m:
        if not skip_preflight:
            _stage("preflight", m.preflight)
        _stage("inventory", m.inventory)
        assessed = _stage("assess", m.assess)
        _stage("migrate", m.migrate)
        verified = _stage("verify", m.verify)
        if verified.incomplete:  # send what the target lacks, once more
            _stage("migrate (missing instances)", m.migrate)
            _stage("verify", m.verify)
        result = _stage("report", m.report)
    _print_report(result)
    groups = assessed.assessment.findings
    out.print(
        f"assessment: {sum(g.count for g in groups)} findings of {len(groups)} kinds;"
        f" {assessed.paths['assessment.html']}"
    )
    if not result.complete:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[bold red]error:[/] interrupted; run the same command again to resume")
        sys.exit(130)
