"""The monthly schedule of the billing report: each tick reports the month before it."""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from cdr_assets import settings
from cdr_assets.reports.assets import chime_billing_report


def previous_month_key(year: int, month: int) -> str:
    """The partition of the month before ``year``/``month`` (January -> December of last year)."""
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


@schedule(
    name="chime_billing_report_schedule",
    cron_schedule=settings.get("CDR_REPORT_CRON"),
    execution_timezone="UTC",
    target=chime_billing_report,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Materializes the billing report of the month that just ended (CDR_REPORT_CRON, UTC).",
)
def chime_billing_report_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    when = context.scheduled_execution_time
    key = previous_month_key(when.year, when.month)
    # One run per month: a frequent cron must not mail the same report again and again.
    return RunRequest(run_key=f"chime_billing_report:{key}", partition_key=key)
