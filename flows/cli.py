"""The `facerecon` command.

Exit codes (documented in the README):
  0  every photo produced a face
  2  a user mistake before any work: bad arguments, params, missing weights, unreadable SRC/DST
  3  the batch ran but some inputs failed (see the summary and manifest.parquet)
  4  DST (or the cache) stopped taking writes: disk full, read-only, permission denied; faces
     published before are intact, a re-run resumes from the cache
  1  an internal error (a bug: please report it with the log)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from facerecon import registry

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_DESTINATION = 0, 1, 2, 3, 4


def _quiet_environment(verbose: bool) -> None:
    # Prefect logs every failed task with its traceback; a user's bad photo is already one line in
    # the summary and the manifest, so the console shows Prefect's logs only with --verbose.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "true")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TQDM_DISABLE", "0")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


class RichProgress:
    """Progress bars: one for the batch, one for the current face's stages."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.batch = None
        self.face = None

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def start_batch(self, n: int) -> None:
        self.batch = self.progress.add_task("photos", total=n)

    def start_photo(self, key: str) -> None:
        if self.face is not None:
            self.progress.remove_task(self.face)
        self.face = self.progress.add_task(f"  {key[-40:]}", total=len(registry.STAGE_NAMES))

    def stage(self, key: str, name: str) -> None:
        if self.face is not None:
            done = registry.STAGE_NAMES.index(name) if name in registry.STAGE_NAMES else 0
            self.progress.update(self.face, completed=done, description=f"  {key[-32:]}: {name}")

    def end_photo(self, key: str, ok: bool) -> None:
        if self.face is not None:
            self.progress.update(self.face, completed=len(registry.STAGE_NAMES),
                                 description=f"  {key[-32:]}: {'done' if ok else 'FAILED'}")
        if self.batch is not None:
            self.progress.advance(self.batch)


def _print_summary(console: Any, summary: dict, dst: str) -> None:
    from rich.table import Table

    table = Table(title=f"facerecon: {summary['faces_ok']} ok, {summary['failed']} failed")
    for col in ("photo", "face", "status", "stage", "seconds", "detail"):
        table.add_column(col, overflow="fold")
    for r in summary["rows"]:
        detail = r.get("error") or (r.get("output") or "")
        style = "green" if r["status"] == "ok" else "red"
        table.add_row(r["photo"], r.get("face") or "-", f"[{style}]{r['status']}[/{style}]", r["stage"],
                      f"{r.get('seconds_total') or 0:.1f}", detail)
    console.print(table)
    if summary.get("skipped"):
        from facerecon.report_html import describe_skipped

        console.print(describe_skipped(summary["skipped"]), markup=False, highlight=False)
    console.print(f"manifest: {summary.get('manifest', dst)}", markup=False, highlight=False)
    if summary.get("report"):
        console.print(f"report:   {summary['report']}", markup=False, highlight=False)


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from flows import progress as prog
    from flows.reconstruct import run_batch

    console = Console(stderr=True)
    overrides = list(args.set or [])
    if args.all_faces:
        overrides.append("align.all_faces=true")
    display = RichProgress(console) if not args.no_progress else None
    prog.install(display)
    try:
        if display is not None:
            with display:
                summary = run_batch(args.src, args.dst, args.params, tuple(overrides), workers=args.workers,
                                    dask_address=args.dask_address, endpoint_url=args.endpoint_url,
                                    include_hidden=args.include_hidden)
        else:
            summary = run_batch(args.src, args.dst, args.params, tuple(overrides), workers=args.workers,
                                dask_address=args.dask_address, endpoint_url=args.endpoint_url,
                                include_hidden=args.include_hidden)
    finally:
        prog.install(None)
    _print_summary(Console(), summary, args.dst)
    return EXIT_OK if summary["failed"] == 0 else EXIT_SOME_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    from rich.console import Console

    from flows.incremental import describe
    from flows.serve import scheduled_batch, serve, validate

    overrides = tuple(args.set or [])
    if not args.once:
        serve(args.src, args.dst, args.cron, name=args.name, params_file=args.params, overrides=overrides,
              endpoint_url=args.endpoint_url, workers=args.workers, dask_address=args.dask_address, port=args.port,
              include_hidden=args.include_hidden)
        return EXIT_OK
    validate(args.src, args.dst, args.params, overrides, args.endpoint_url)
    summary = scheduled_batch(args.src, args.dst, args.params, list(overrides), args.endpoint_url, args.workers,
                              args.dask_address, args.include_hidden)
    _print_summary(Console(), summary, args.dst)
    Console().print(describe(summary.get("incremental", {})))
    return EXIT_OK if summary["failed"] == 0 else EXIT_SOME_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    from facerecon.report_html import write_report

    print(write_report(args.dst, endpoint_url=args.endpoint_url))
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from flows.server import run_ui

    return run_ui(args.host, args.port)


HIDDEN_HELP = "process hidden files (names starting with '.') too; hidden folders stay skipped"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerecon", description="Textured 3D faces from front photos.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect and stage logs")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="reconstruct every photo in SRC into DST")
    run.add_argument("src", help="folder or s3://bucket/prefix of photos")
    run.add_argument("dst", help="output folder or s3://bucket/prefix")
    run.add_argument("--params", default=None, help="params.yaml (default: built-in defaults)")
    run.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", help="override one parameter")
    run.add_argument("--all-faces", action="store_true", help="reconstruct every face, not just the largest")
    run.add_argument("--workers", type=int, default=1, help="faces in parallel (Dask local cluster when > 1)")
    run.add_argument("--dask-address", default=None, help="tcp://host:port of an existing Dask scheduler")
    run.add_argument("--endpoint-url", default=None, help="S3 endpoint (MinIO, moto, ...)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--include-hidden", action="store_true", help=HIDDEN_HELP)
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="rebuild DST/index.html (the batch report) from an existing DST")
    report.add_argument("dst", help="output folder or s3://bucket/prefix of an earlier `facerecon run`")
    report.add_argument("--endpoint-url", default=None, help="S3 endpoint (MinIO, moto, ...)")
    report.set_defaults(func=cmd_report)

    serve = sub.add_parser("serve", help="run the batch on a schedule, only photos new or changed since the "
                           "last successful run (Prefect deployment)")
    serve.add_argument("src", help="folder or s3://bucket/prefix of photos")
    serve.add_argument("dst", help="output folder or s3://bucket/prefix (also holds the run state)")
    serve.add_argument("--cron", default="*/30 * * * *", help='schedule, e.g. "*/30 * * * *" (default)')
    serve.add_argument("--once", action="store_true", help="run one scheduled iteration now and exit")
    serve.add_argument("--name", default="facerecon", help="deployment name (default: facerecon)")
    serve.add_argument("--port", type=int, default=4200,
                       help="port of the local Prefect server started when PREFECT_API_URL is not set")
    for a, kw in (("--params", {"default": None, "help": "params.yaml"}),
                  ("--set", {"action": "append", "metavar": "STAGE.KEY=VALUE", "help": "override one parameter"}),
                  ("--workers", {"type": int, "default": 1, "help": "faces in parallel (Dask)"}),
                  ("--dask-address", {"default": None, "help": "tcp://host:port of a Dask scheduler"}),
                  ("--endpoint-url", {"default": None, "help": "S3 endpoint (MinIO, moto, ...)"}),
                  ("--include-hidden", {"action": "store_true", "help": HIDDEN_HELP})):
        serve.add_argument(a, **kw)
    serve.set_defaults(func=cmd_serve)

    ui = sub.add_parser("ui", help="start a local Prefect server + UI (http://127.0.0.1:4200)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=4200)
    ui.set_defaults(func=cmd_ui)

    gan = sub.add_parser("gan", help="StyleGAN2 tools (thesis backend)")
    gan_sub = gan.add_subparsers(dest="gan_command", required=True)
    gan_sub.add_parser("fit-direction", help="fit an InterfaceGAN pose direction (pose.pt) for a generator "
                       "(see `facerecon gan fit-direction --help`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["gan", "fit-direction"]:  # its own argument parser
        _quiet_environment(False)
        from facerecon.errors import FaceReconError
        from facerecon.gan.fit_direction import cli_main

        try:
            return cli_main(argv[2:])
        except FaceReconError as exc:
            print(f"facerecon: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_environment(args.verbose)
    from facerecon.errors import DestinationError, FaceReconError

    if getattr(args, "workers", 1) < 1:
        print("facerecon: error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        code = args.func(args)
    except DestinationError as exc:
        print(f"facerecon: error: {exc}", file=sys.stderr)
        code = EXIT_DESTINATION
    except FaceReconError as exc:
        print(f"facerecon: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("facerecon: interrupted; finished faces are kept, a re-run resumes", file=sys.stderr)
        code = 130
    except Exception:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        print("facerecon: internal error (a bug): please report the traceback above", file=sys.stderr)
        code = EXIT_INTERNAL
    return code


def entry() -> None:
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # At exit the ephemeral Prefect server shuts down and may print 'Error flushing events' with
    # CancelledError tracebacks. Everything of ours is written and flushed by now, so send what
    # the exit hooks print to /dev/null, but let them run (they stop the server process).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    sys.exit(code)


if __name__ == "__main__":
    entry()
