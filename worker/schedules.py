"""The end-of-day reconciliation's Temporal Schedules: one per broker, daily at ``reconciliation.time_utc``.

The worker that owns a broker's session creates its schedule at start-up, or updates it to the settings in force
(time, day offset, task queues), so changing ``EXODUS_RECONCILIATION__TIME_UTC`` and restarting moves it. A
schedule skips a firing while the previous run of the broker still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.settings import Settings
from workflows.reconciliation import ReconciliationInput, ReconciliationWorkflow

__all__ = ["ensure_reconciliation_schedules", "reconciliation_schedule", "schedule_id"]

log = logging.getLogger(__name__)


def schedule_id(broker: str) -> str:
    """The id of a broker's reconciliation schedule."""
    return f"reconcile-{broker}"


def reconciliation_schedule(settings: Settings, broker: str) -> Schedule:
    """The schedule of ``broker`` as the settings say."""
    at = settings.reconciliation.time_utc
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconciliationWorkflow.run,
            ReconciliationInput(
                broker=broker,
                broker_task_queue=settings.temporal.broker_task_queue(broker),
                days_back=settings.reconciliation.days_back,
            ),
            id=f"reconcile-{broker}-scheduled",
            task_queue=settings.temporal.task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(at.hour)],
                    minute=[ScheduleRange(at.minute)],
                    second=[ScheduleRange(at.second)],
                    comment=f"end-of-day reconciliation of {broker}",
                )
            ],
            time_zone_name="UTC",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_reconciliation_schedules(client: Client, settings: Settings, brokers: Iterable[str]) -> list[str]:
    """Create (or bring up to date) the schedule of each broker; the ids, in order. Nothing when disabled."""
    if not settings.reconciliation.schedule_enabled:
        return []
    ids = []
    for broker in brokers:
        sid = schedule_id(broker)
        schedule = reconciliation_schedule(settings, broker)
        try:
            await client.create_schedule(sid, schedule)
            log.info("created reconciliation schedule %s (daily at %s UTC)", sid, settings.reconciliation.time_utc)
        except ScheduleAlreadyRunningError:

            def update(_: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await client.get_schedule_handle(sid).update(update)
            log.info("updated reconciliation schedule %s (daily at %s UTC)", sid, settings.reconciliation.time_utc)
        ids.append(sid)
    return ids
