"""``cdr-assets``: generate data, run the pipelines headless, backfill, start the UI, demo."""

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cdr_assets import settings


@contextmanager
def _resources() -> Iterator[tuple[Any, dict[str, Any]]]:
    """The definitions and their resources, configured from the environment."""
    from dagster import build_resources

    from cdr_assets.definitions import defs

    with build_resources(defs.resources) as res:
        yield defs, {k: getattr(res, k) for k in defs.resources}


# The figures a run summary line shows, per asset it materialized.
_SHOWN = {
    "processed_cdrs": ("objects_in", "rows_written", "quarantined", "duplicates_dropped", "already_ingested"),
    "connect_ctrs": ("records_in", "rows_staged", "quarantined"),
    "fact_contact": ("inserted", "updated_to_newer_version", "stale_or_duplicate"),
}


def _print_outcomes(outcomes) -> bool:
    ok = True
    for o in outcomes:
        if o.skipped:
            print(f"  {o.source} partition {o.partition_key}: already done (run key), skipped")
            continue
        ok &= o.success
        status = "ok" if o.success else "FAILED"
        figures = ", ".join(
            f"{k}={o.metadata[asset][k]}"
            for asset, names in _SHOWN.items()
            for k in names
            if k in o.metadata.get(asset, {})
        )
        print(f"  {o.source} partition {o.partition_key} [{status}] {figures}  run {o.run_id[:8]}")
    return ok


def cmd_generate(args: argparse.Namespace) -> int:
    from cdr_assets.chime.generate import generate_cdrs

    with _resources() as (_, res):
        storage = res["storage"]
        store = storage.get()
        store.ensure_bucket(storage.chime_cdr_bucket)
        summary = generate_cdrs(
            store,
            storage.chime_cdr_bucket,
            calls=args.calls,
            days=args.days,
            start=args.start,
            seed=args.seed,
            bad_fraction=args.bad_fraction,
            voice_connectors=args.voice_connectors,
        )
        print(
            f"wrote {summary.objects_written} objects to {store.uri(storage.chime_cdr_bucket)}: "
            f"{summary.calls} calls, {summary.duplicate_deliveries} duplicate deliveries, "
            f"{summary.late_deliveries} late, {sum(summary.bad_objects.values())} malformed"
        )
        if args.contacts:
            from cdr_assets.connect.generate import generate_ctrs

            store.ensure_bucket(storage.connect_bucket)
            voice: list = []
            ctrs = generate_ctrs(
                store,
                storage.connect_bucket,
                contacts=args.contacts,
                days=args.days,
                start=args.start,
                seed=args.seed,
                prefix=res["connect_settings"].ctr_prefix.rstrip("/") + "/",
                voice_contacts=voice,
            )
            print(
                f"wrote {ctrs.files} Firehose CTR files to {store.uri(storage.connect_bucket)}: "
                f"{ctrs.contacts} contacts ({ctrs.abandoned} abandoned, {ctrs.transfers} transfers, "
                f"{dict(ctrs.channels)}), {ctrs.updated_versions} updated versions, "
                f"{ctrs.duplicate_deliveries} duplicate deliveries"
            )
            if args.recording_fraction > 0:
                from cdr_assets.recordings.generate import write_contact_media

                media = write_contact_media(
                    store,
                    storage.connect_bucket,
                    voice,
                    fraction=args.recording_fraction,
                    agent_prefix=res["recordings_settings"].agent_prefix,
                    max_seconds=args.recording_seconds,
                    seed=args.seed,
                )
                print(
                    f"wrote {media.recordings} call recordings and {media.agent_recordings} agent screen "
                    f"recordings with sidecars ({media.bytes_written / 1e6:.1f} MB) for "
                    f"{args.recording_fraction:.0%} of the {len(voice)} recorded voice contacts"
                )
        if args.recordings:
            from cdr_assets.recordings.generate import generate_recordings

            store.ensure_bucket(storage.connect_bucket)
            recs = generate_recordings(
                store,
                storage.connect_bucket,
                count=args.recordings,
                days=args.days,
                start=args.start,
                seed=args.seed,
                max_seconds=args.recording_seconds,
            )
            print(
                f"wrote {recs.recordings} call recordings ({recs.bytes_written / 1e6:.1f} MB) to "
                f"{store.uri(storage.connect_bucket, 'connect/')}"
            )
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from cdr_assets.definitions import defs
    from cdr_assets.headless import process

    outcomes = process(defs, include_schedules=args.include_schedules)
    if not outcomes:
        print("nothing to do")
    return 0 if _print_outcomes(outcomes) else 1


def _backfill(defs, days: list[date], source: str = "chime") -> bool:
    from dagster import DagsterInstance

    from cdr_assets.headless import execute_assets

    settings.ensure_dagster_home()
    instance = DagsterInstance.get()
    if source == "connect":
        from cdr_assets.connect.assets import BACKFILL_DAYS_PER_RUN, connect_warehouse

        # Runs of up to a week of consecutive days, as the asset's backfill policy cuts a UI
        # backfill: each run stages the next day while the previous one loads.
        outcomes = [
            execute_assets(
                defs,
                instance,
                connect_warehouse.keys,
                partition_key=None,
                partition_range=(run[0].isoformat(), run[-1].isoformat()),
                source="backfill:connect",
            )
            for run in _consecutive_runs(days, BACKFILL_DAYS_PER_RUN)
        ]
        return _print_outcomes(outcomes)
    from cdr_assets.chime.assets import PROCESSED_CDRS, QUARANTINED_CDRS

    outcomes = [
        execute_assets(
            defs,
            instance,
            [PROCESSED_CDRS, QUARANTINED_CDRS],
            partition_key=d.isoformat(),
            source=f"backfill:{source}",
        )
        for d in days
    ]
    return _print_outcomes(outcomes)


def _consecutive_runs(days: list[date], most: int) -> list[list[date]]:
    """``days`` (any order, repeats ignored) cut into runs of at most ``most`` consecutive days."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and len(runs[-1]) < most and (day - runs[-1][-1]).days == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def cmd_backfill(args: argparse.Namespace) -> int:
    from cdr_assets.definitions import defs

    if args.end < args.start:
        print("--to is before --from", file=sys.stderr)
        return 2
    days = [args.start + timedelta(n) for n in range((args.end - args.start).days + 1)]
    return 0 if _backfill(defs, days, args.source) else 1


def cmd_dev(args: argparse.Namespace) -> int:
    settings.ensure_dagster_home()
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    argv = [dagster, "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)]
    os.execv(dagster, argv)
    return 0  # not reached


def cmd_demo(args: argparse.Namespace) -> int:
    from cdr_assets.chime.generate import generate_cdrs
    from cdr_assets.demo import lake_summary

    with _resources() as (defs, res):
        storage = res["storage"]
        store = storage.get()
        store.ensure_bucket(storage.chime_cdr_bucket)
        today = datetime.now(UTC).date()
        # Days both inside and before the sensor's window, so the demo shows both paths.
        start = today - timedelta(days=args.days + 2)
        print(f"1/3 generating {args.calls} calls over {args.days} days from {start} (seed {args.seed})")
        gen = generate_cdrs(
            store, storage.chime_cdr_bucket, calls=args.calls, days=args.days, start=start, seed=args.seed
        )
        print(f"    {gen.objects_written} objects in {store.uri(storage.chime_cdr_bucket)}")
        print("2/3 sensor tick: incremental runs for new objects inside the look-back window")
        from cdr_assets.headless import process

        ok = _print_outcomes(process(defs))
        lookback = res["chime_settings"].lookback_days
        older = sorted(
            date.fromisoformat(d)
            for d in gen.per_delivery_day
            if date.fromisoformat(d) < today - timedelta(lookback)
        )
        print(f"3/3 backfill of {len(older)} delivery days older than the window")
        ok &= _backfill(defs, older)
        print(lake_summary(res))
    return 0 if ok else 1


def cmd_athena_ddl(args: argparse.Namespace) -> int:
    from cdr_assets.chime.schema import ATHENA_DDL

    print(ATHENA_DDL.replace("<LAKE_BUCKET>", settings.get("LAKE_BUCKET")) + ";")
    return 0


def _date(text: str) -> date:
    return date.fromisoformat(text)


@contextmanager
def _lake_connection() -> Iterator[tuple[Any, str, Any]]:
    """An in-memory DuckDB that reads the lake (no lock on the warehouse file), the lake's root
    and its storage."""
    from cdr_assets.chime.search import open_search_connection
    from cdr_assets.storage import storage_from_env

    store = storage_from_env()
    conn = open_search_connection(store)
    try:
        yield conn, store.uri(settings.get("LAKE_BUCKET")), store
    finally:
        conn.close()


def cmd_search(args: argparse.Namespace) -> int:
    from cdr_assets.chime.search import SearchError, SearchFilters, parse_time, search_cdrs
    from cdr_assets.tabular import render

    try:
        filters = SearchFilters(
            source=args.source,
            destination=args.destination,
            number=args.number,
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until, end_of_day=True) if args.until else None,
            min_duration=args.min_duration,
            max_duration=args.max_duration,
            status=args.status,
            direction=args.direction,
            voice_connector=args.voice_connector,
            limit=args.limit,
            order=args.order,
        ).normalized()
    except SearchError as exc:
        print(f"cdr-assets search: error: {exc}", file=sys.stderr)
        return 2
    with _lake_connection() as (conn, lake, store):
        result = search_cdrs(conn, lake, filters, store.arrow_filesystem()[0])
    print(render(result, args.format))
    if args.format == "table":
        print(f"({result.num_rows} call{'s' if result.num_rows != 1 else ''})", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from cdr_assets.chime.stats import call_stats
    from cdr_assets.tabular import render

    if args.end < args.start:
        print("cdr-assets stats: error: --to is before --from", file=sys.stderr)
        return 2
    with _lake_connection() as (conn, lake, _):
        result = call_stats(
            conn, lake, args.start, args.end, per_day=not args.total, voice_connector=args.voice_connector
        )
    print(render(result, args.format))
    return 0


def main(argv: list[str] | None = None) -> int:
    settings.apply_defaults()
    parser = argparse.ArgumentParser(prog="cdr-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic Chime CDR objects into CHIME_CDR_BUCKET")
    gen.add_argument("--calls", type=int, default=20_000)
    gen.add_argument("--days", type=int, default=3)
    gen.add_argument("--start", type=_date, default=datetime.now(UTC).date() - timedelta(days=3))
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--bad-fraction", type=float, default=0.01)
    gen.add_argument("--voice-connectors", type=int, default=4)
    gen.add_argument(
        "--contacts",
        type=int,
        default=0,
        help="also write this many Amazon Connect contacts as Firehose CTR files into CONNECT_BUCKET",
    )
    gen.add_argument(
        "--recordings",
        type=int,
        default=0,
        help="also write this many Connect call recordings (8 kHz stereo WAV) into CONNECT_BUCKET",
    )
    gen.add_argument(
        "--recording-fraction",
        type=float,
        default=0.02,
        help="with --contacts: the share of recorded voice contacts that also get their Connect call "
        "recording and an agent screen recording (MP4 + sidecar JSON) in CONNECT_BUCKET",
    )
    gen.add_argument("--recording-seconds", type=float, default=10.0, help="longest generated recording")
    gen.set_defaults(func=cmd_generate)

    proc = sub.add_parser("process", help="evaluate every sensor once and run what it requests")
    proc.add_argument("--include-schedules", action="store_true")
    proc.set_defaults(func=cmd_process)

    back = sub.add_parser(
        "backfill", help="(re)build delivery-day partitions of the CDR lake, or of the Connect warehouse"
    )
    back.add_argument("--from", dest="start", type=_date, required=True)
    back.add_argument("--to", dest="end", type=_date, required=True)
    back.add_argument(
        "--source",
        choices=["chime", "connect"],
        default="chime",
        help="chime: CDRs into the lake (default); connect: CTRs staged and loaded into the star schema",
    )
    back.set_defaults(func=cmd_backfill)

    dev = sub.add_parser("dev", help="the Dagster UI with sensors and schedules")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)

    demo = sub.add_parser("demo", help="generate a landing zone, process it, print a summary")
    demo.add_argument("--calls", type=int, default=20_000)
    demo.add_argument("--days", type=int, default=4)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    ddl = sub.add_parser("athena-ddl", help="print the Athena/Glue table over the lake (LAKE_BUCKET)")
    ddl.set_defaults(func=cmd_athena_ddl)

    search = sub.add_parser(
        "search",
        help="find calls in the lake (at least one filter; times are ISO dates or date-times, UTC)",
    )
    search.add_argument("--source", metavar="NUMBER", help="calling number (E.164)")
    search.add_argument("--destination", metavar="NUMBER", help="called number")
    search.add_argument("--number", metavar="NUMBER", help="either side of the call")
    search.add_argument("--since", metavar="WHEN", help="call started at or after (a date: 00:00 UTC)")
    search.add_argument("--until", metavar="WHEN", help="call ended at or before (a date: the whole day)")
    search.add_argument("--min-duration", type=int, metavar="SECONDS", help="billable seconds, at least")
    search.add_argument("--max-duration", type=int, metavar="SECONDS", help="billable seconds, at most")
    search.add_argument("--status", help="e.g. Completed, Failed (any case)")
    search.add_argument("--direction", help="Inbound or Outbound")
    search.add_argument("--voice-connector", metavar="ID")
    search.add_argument("--limit", type=int, default=100)
    search.add_argument("--order", choices=("newest", "oldest"), default="newest", help="by start time")
    search.add_argument("--format", choices=("table", "json", "csv"), default="table")
    search.set_defaults(func=cmd_search)

    stats = sub.add_parser("stats", help="call statistics per day and voice connector (end day, UTC)")
    stats.add_argument("--from", dest="start", type=_date, required=True)
    stats.add_argument("--to", dest="end", type=_date, required=True)
    stats.add_argument("--voice-connector", metavar="ID")
    stats.add_argument("--total", action="store_true", help="one row per voice connector for the range")
    stats.add_argument("--format", choices=("table", "json", "csv"), default="table")
    stats.set_defaults(func=cmd_stats)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
