"""``python -m worker``: run the order workflows and the brokers this worker owns until SIGINT/SIGTERM.

At start-up it waits for Postgres and Temporal (one log line per failed try, with backoff) instead of
exiting; a stop signal while it waits ends it cleanly.

Every worker serves the order queue; each broker session is run by the one worker holding its claim
(``worker/ownership.py``). A standby worker (``EXODUS_WORKER__STANDBY=true``) takes a claimed broker over when its
owner stops. A worker that loses a claim to another worker stops (exit status 3) rather than run a session twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket

from prometheus_client import start_http_server
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError

from activities.broker import BrokerActivities
from brokers import Broker
from core.db import open_pool, wait_for_postgres
from core.instruments import load_instruments
from core.logs import setup_logging
from core.process import exit_now
from core.settings import Settings, get_settings
from core.startup import StartupAborted, wait_for_temporal
from core.tracing import setup_tracing
from store.quotes import QuoteWriter
from worker.build import broker_worker, build_brokers, build_workers, market_data_for, running_workers
from worker.dispatcher import ReportDispatcher
from worker.ownership import BrokerClaim, ClaimLost
from worker.schedules import ensure_reconciliation_schedules
from worker.sweep import BrokerSweep

log = logging.getLogger("worker")


def sdk_metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's own metrics (task latencies, pollers, sticky cache), if enabled."""
    port = settings.worker.temporal_metrics_port
    if not port:
        return None
    address = f"{settings.worker.metrics_host}:{port}"
    log.info("Temporal SDK metrics on http://%s/metrics", address)
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


#: Exit status of a worker that lost a broker's claim to another worker.
EXIT_CLAIM_LOST = 3


def worker_identity(settings: Settings) -> str:
    """This process' identity on Temporal (the worker of a history's tasks): distinct for every process."""
    return f"exodus-worker-{os.getpid()}@{socket.gethostname()}/{settings.temporal.task_queue}"


async def main() -> int:
    """Start everything, wait for a stop signal, stop everything; the process' exit status."""
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
        return 0
    wcfg = settings.worker
    claims = {name: BrokerClaim(url, name) for name in dict.fromkeys(wcfg.brokers)}
    started: list[Broker] = []
    background: list[asyncio.Task[None]] = []
    status = 0
    quotes = QuoteWriter.from_settings(pool, settings.market_data)  # what the brokers see, into the quote store
    try:
        client = await wait_for_temporal(
            settings, identity=worker_identity(settings), stop=stop, runtime=sdk_metrics_runtime(settings)
        )
        instruments = load_instruments(settings.instruments_file)
        owned: list[str] = []
        for name, claim in claims.items():
            if wcfg.standby:
                if await claim.try_take():
                    owned.append(name)
                else:
                    log.info("broker %s is owned by another worker; standing by to take it over", name)
            else:
                await claim.take(wait_seconds=wcfg.claim_wait_seconds)
                owned.append(name)
        brokers = await build_brokers(settings, instruments=instruments, pool=pool, quotes=quotes, names=owned)
        dispatcher = ReportDispatcher(client, pool)
        for name, broker in brokers.items():
            await broker.start(dispatcher)
            started.append(broker)
            log.info("broker %s started", name)

        def sweep(broker: Broker) -> None:
            # The session's owner sweeps a broker with mass status (worker/sweep.py).
            if broker.capabilities.mass_status and settings.orders.sweep_seconds > 0:
                sweeper = BrokerSweep(client, pool, broker, interval=settings.orders.sweep_seconds)
                background.append(asyncio.create_task(sweeper.run(stop), name=f"sweep-{broker.name}"))
                log.info("broker %s: swept every %gs", broker.name, settings.orders.sweep_seconds)

        if wcfg.metrics_port:
            start_http_server(wcfg.metrics_port, addr=wcfg.metrics_host)
            log.info("worker metrics on http://%s:%d/metrics", wcfg.metrics_host, wcfg.metrics_port)
        workers = build_workers(
            client,
            settings,
            pool=pool,
            brokers=brokers,
            instruments=instruments,
            market=market_data_for(settings, instruments),
        )

        async def take_over(name: str) -> None:
            # A standby: wait for the broker's owner to stop, then run its session here.
            claim = claims[name]
            while not await claim.try_take():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wcfg.claim_check_seconds)
                if stop.is_set():
                    return
            log.info("broker %s: its owner stopped; this worker takes its session over", name)
            broker = (await build_brokers(settings, instruments=instruments, pool=pool, quotes=quotes, names=[name]))[
                name
            ]
            await broker.start(dispatcher)
            started.append(broker)
            sweep(broker)
            async with running_workers([broker_worker(client, settings, name, BrokerActivities({name: broker}))]):
                log.info("broker %s started; polling %s", name, settings.temporal.broker_task_queue(name))
                await stop.wait()

        async def guard_claims() -> None:
            nonlocal status
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wcfg.claim_check_seconds)
                for claim in claims.values():
                    if not claim.held:
                        continue
                    try:
                        await claim.check()
                    except ClaimLost as e:
                        log.error("%s; stopping", e)
                        status = EXIT_CLAIM_LOST
                        stop.set()
                    except Exception as e:  # Postgres away: nobody can take the claim meanwhile; try again
                        log.warning("broker %s: cannot check its claim yet: %s", claim.broker, e)

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
            background.append(asyncio.create_task(guard_claims(), name="broker-claims"))
            for broker in brokers.values():
                sweep(broker)
            background.extend(
                asyncio.create_task(take_over(name), name=f"standby-{name}") for name in claims if name not in owned
            )
            done = asyncio.create_task(stop.wait())
            await asyncio.wait([done, *background], return_when=asyncio.FIRST_EXCEPTION)
            for task in background:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("worker task %s failed; stopping", task.get_name(), exc_info=task.exception())
                    status = status or 1
                    stop.set()
            await done
            log.info("stopping")
            await asyncio.gather(*background, return_exceptions=True)  # each ends by itself once stop is set
    except StartupAborted as e:
        log.info("%s", e)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for broker in reversed(started):
            await broker.close()
        for claim in claims.values():  # only after its session is closed may another worker take it
            await claim.release()
        await quotes.aclose()
        await pool.close()
    return status


if __name__ == "__main__":
    exit_now(asyncio.run(main()))  # after the clean shutdown above; see core/process.py
