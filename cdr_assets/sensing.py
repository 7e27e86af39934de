"""Shared Dagster shell of the bucket sensors: discovery results to partitioned run requests."""

from collections.abc import Iterable
from datetime import date

from dagster import DailyPartitionsDefinition, RunRequest

from cdr_assets.chime.discovery import DayRequest


def day_run_requests(
    requests: Iterable[DayRequest], *, op_name: str, partitions_def: DailyPartitionsDefinition
) -> tuple[list[RunRequest], list[date]]:
    """One run per delivery day with its key ranges as the op's config; days before the
    first partition are returned separately (they cannot be requested)."""
    first = date.fromisoformat(partitions_def.start.strftime("%Y-%m-%d"))
    runs, too_early = [], []
    for req in requests:
        if req.day < first:
            too_early.append(req.day)
            continue
        ranges = [{"prefix": r.prefix, "start_after": r.start_after, "end_at": r.end_at} for r in req.ranges]
        runs.append(
            RunRequest(
                run_key=req.run_key,
                partition_key=req.day.isoformat(),
                run_config={"ops": {op_name: {"config": {"ranges": ranges}}}},
                tags={
                    "cdr_assets/new_objects": str(req.new_objects),
                    "cdr_assets/trigger": "late-sweep" if req.late_digest is not None else "new-objects",
                },
            )
        )
    return runs, too_early
