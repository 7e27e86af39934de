"""Run sensors (and optionally schedules) once, in-process, without the Dagster daemon.

What a deployment without the daemon puts in cron, and what ``make demo`` runs. Cursors are
kept in ``$DAGSTER_HOME/headless_cursors.json`` and saved only when every run a sensor
requested succeeded, so failed work is requested again next time; run keys that already
succeeded in the instance are not run twice.
"""

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    RunsFilter,
    build_schedule_context,
    build_sensor_context,
)

from cdr_assets import settings


@dataclass
class RunOutcome:
    source: str
    partition_key: str | None
    assets: list[str]
    success: bool
    run_id: str
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: bool = False


def _cursor_file() -> Path:
    return settings.ensure_dagster_home() / "headless_cursors.json"


def _already_succeeded(instance: DagsterInstance, run_key: str | None) -> bool:
    if not run_key:
        return False
    runs = instance.get_runs(
        RunsFilter(tags={"dagster/run_key": run_key}, statuses=[DagsterRunStatus.SUCCESS]), limit=1
    )
    return bool(runs)


def execute_assets(
    defs: Definitions,
    instance: DagsterInstance,
    keys: Iterable[AssetKey],
    *,
    partition_key: str | None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    source: str = "manual",
    partition_range: tuple[str, str] | None = None,
) -> RunOutcome:
    """One in-process run of ``keys`` for ``partition_key``, or for the partitions of
    ``partition_range`` (first, last) in one run, as a backfill policy of several days runs them."""
    keys = sorted(set(keys), key=lambda k: k.to_user_string())
    tags = dict(tags or {})
    if partition_range is not None:
        tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"] = (
            partition_range
        )
    job = defs.resolve_implicit_global_asset_job_def()
    # Headless output is the summary; Dagster's per-step events stay in the run's event log.
    config = {"loggers": {"console": {"config": {"log_level": settings.get("CDR_LOG_LEVEL")}}}}
    result = job.execute_in_process(
        run_config={**config, **(run_config or {})},
        instance=instance,
        partition_key=partition_key,
        asset_selection=keys,
        tags=tags,
        raise_on_error=False,
    )
    metadata = {
        ev.asset_key.to_user_string(): {
            k: v.value for k, v in ev.step_materialization_data.materialization.metadata.items()
        }
        for ev in result.get_asset_materialization_events()
        if ev.asset_key is not None
    }
    shown = partition_key if partition_range is None else "..".join(partition_range)
    return RunOutcome(
        source, shown, [k.to_user_string() for k in keys], result.success, result.run_id, metadata
    )


def _downstream_runs(defs: Definitions, requested: set[AssetKey], partition_key: str | None):
    """Assets downstream of ``requested``: same partitioning -> same key; unpartitioned -> once."""
    graph = defs.resolve_asset_graph()
    below = set()
    frontier = set(requested)
    while frontier:
        nxt = set()
        for key in frontier:
            nxt |= set(graph.get(key).child_keys)
        nxt -= below | requested
        below |= nxt
        frontier = nxt
    same, unpartitioned = [], []
    part_def = graph.get(next(iter(requested))).partitions_def if requested else None
    for key in below:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if node.partitions_def is None:
            unpartitioned.append(key)
        elif node.partitions_def == part_def:
            same.append(key)
    return same, unpartitioned


def _run_request(
    defs: Definitions,
    instance: DagsterInstance,
    source: str,
    request: RunRequest,
    default_keys: list[AssetKey],
    unpartitioned_below: set[AssetKey],
) -> list[RunOutcome]:
    """Run one request with its same-partition downstream; collect unpartitioned downstream
    assets in ``unpartitioned_below`` to run once after all requests."""
    if _already_succeeded(instance, request.run_key):
        return [RunOutcome(source, request.partition_key, [], True, "", skipped=True)]
    keys = set(request.asset_selection or default_keys)
    same, unpartitioned = _downstream_runs(defs, keys, request.partition_key)
    tags = dict(request.tags)
    if request.run_key:
        tags["dagster/run_key"] = request.run_key
    outcomes = [
        execute_assets(
            defs,
            instance,
            keys | set(same),
            partition_key=request.partition_key,
            run_config=request.run_config,
            tags=tags,
            source=source,
        )
    ]
    if outcomes[0].success:
        unpartitioned_below.update(unpartitioned)
    return outcomes


def _target_keys(defs: Definitions, instigator: Any) -> list[AssetKey]:
    """The assets a sensor or schedule targets (its selection, or its job's assets)."""
    if getattr(instigator, "asset_selection", None) is not None:
        return sorted(instigator.asset_selection.resolve(defs.resolve_asset_graph()))
    job = defs.resolve_job_def(instigator.job_name)
    return sorted(job.asset_layer.executable_asset_keys)


def process(
    defs: Definitions,
    *,
    include_schedules: bool = False,
    log: Callable[[str], None] = print,
) -> list[RunOutcome]:
    """Evaluate every sensor once (and each schedule at this moment), run what they ask."""
    settings.ensure_dagster_home()
    instance = DagsterInstance.get()
    cursor_path = _cursor_file()
    cursors: dict[str, str | None] = json.loads(cursor_path.read_text()) if cursor_path.exists() else {}
    outcomes: list[RunOutcome] = []
    unpartitioned_below: set[AssetKey] = set()
    for sensor_def in defs.sensors or []:
        sensor_def = defs.resolve_sensor_def(sensor_def.name)
        with build_sensor_context(
            instance=instance,
            cursor=cursors.get(sensor_def.name),
            resources=defs.resources,
            definitions=defs,
        ) as ctx:
            data = sensor_def.evaluate_tick(ctx)
        keys = _target_keys(defs, sensor_def)
        ok = True
        for request in data.run_requests or []:
            for outcome in _run_request(
                defs, instance, f"sensor:{sensor_def.name}", request, keys, unpartitioned_below
            ):
                outcomes.append(outcome)
                ok &= outcome.success
        if data.skip_message:
            log(f"sensor {sensor_def.name}: {data.skip_message}")
        if ok:
            cursors[sensor_def.name] = data.cursor
            cursor_path.write_text(json.dumps(cursors))
        else:
            log(f"sensor {sensor_def.name}: a run failed; its cursor is not advanced")
    if include_schedules:
        now = datetime.now(UTC)
        for schedule_def in defs.schedules or []:
            schedule_def = defs.resolve_schedule_def(schedule_def.name)
            with build_schedule_context(
                instance=instance,
                scheduled_execution_time=now,
                resources=defs.resources,
                repository_def=defs.get_repository_def(),
            ) as ctx:
                data = schedule_def.evaluate_tick(ctx)
            keys = _target_keys(defs, schedule_def)
            for request in data.run_requests or []:
                outcomes.extend(
                    _run_request(
                        defs, instance, f"schedule:{schedule_def.name}", request, keys, unpartitioned_below
                    )
                )
    if unpartitioned_below:
        outcomes.append(
            execute_assets(defs, instance, unpartitioned_below, partition_key=None, source="downstream")
        )
    return outcomes
