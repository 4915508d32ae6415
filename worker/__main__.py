"""``python -m worker``: run the order workflows and the brokers this worker owns until SIGINT/SIGTERM.

At start-up it waits for Postgres and Temporal (one log line per failed try, with backoff) instead of
exiting; a stop signal while it waits ends it cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError

from core.db import open_pool, wait_for_postgres
from core.instruments import load_instruments
from core.logs import setup_logging
from core.process import exit_now
from core.settings import Settings, get_settings
from core.startup import StartupAborted, wait_for_temporal
from core.tracing import setup_tracing
from store.quotes import QuoteWriter
from worker.build import build_brokers, build_workers, market_data_for, running_workers
from worker.dispatcher import ReportDispatcher
from worker.schedules import ensure_reconciliation_schedules

log = logging.getLogger("worker")


def sdk_metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's own metrics (task latencies, pollers, sticky cache), if enabled."""
    port = settings.worker.temporal_metrics_port
    if not port:
        return None
    address = f"{settings.worker.metrics_host}:{port}"
    log.info("Temporal SDK metrics on http://%s/metrics", address)
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def main() -> None:
    """Start everything, wait for a stop signal, stop everything."""
    settings = get_settings()
    setup_logging(fmt=settings.log.format, level=settings.log.level)
    setup_tracing("exodus-worker")
    url = settings.require_database_url()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await wait_for_postgres(url, stop=stop)
        pool = await open_pool(settings, name="worker")
    except StartupAborted as e:
        log.info("%s", e)
        return
    started = []
    quotes = QuoteWriter.from_settings(pool, settings.market_data)  # what the brokers see, into the quote store
    try:
        client = await wait_for_temporal(
            settings,
            identity=f"exodus-worker@{settings.temporal.task_queue}",
            stop=stop,
            runtime=sdk_metrics_runtime(settings),
        )
        instruments = load_instruments(settings.instruments_file)
        brokers = await build_brokers(settings, instruments=instruments, pool=pool, quotes=quotes)
        dispatcher = ReportDispatcher(client, pool)
        for name, broker in brokers.items():
            await broker.start(dispatcher)
            started.append(broker)
            log.info("broker %s started", name)
        if settings.worker.metrics_port:
            start_http_server(settings.worker.metrics_port, addr=settings.worker.metrics_host)
            log.info(
                "worker metrics on http://%s:%d/metrics", settings.worker.metrics_host, settings.worker.metrics_port
            )
        workers = build_workers(
            client,
            settings,
            pool=pool,
            brokers=brokers,
            instruments=instruments,
            market=market_data_for(settings, instruments),
        )
        try:
            await ensure_reconciliation_schedules(client, settings, brokers)
        except RPCError as e:  # orders must flow even when the schedules cannot be written; the alert says so
            log.error("could not create the reconciliation schedules: %s", e)
        async with running_workers(workers):
            log.info(
                "worker polling %s and broker queues %s",
                settings.temporal.task_queue,
                [settings.temporal.broker_task_queue(b) for b in brokers],
            )
            await stop.wait()
            log.info("stopping")
    except StartupAborted as e:
        log.info("%s", e)
    finally:
        for broker in reversed(started):
            await broker.close()
        await quotes.aclose()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)  # after the clean shutdown above; see core/process.py
