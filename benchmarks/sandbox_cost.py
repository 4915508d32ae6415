"""What the workflow sandbox costs per order, without a server: ``python -m benchmarks.sandbox_cost``.

Two measurements, both in CPU time of this process (``time.process_time``), each the best of ``--repeat`` rounds:

* **creation**: the sandbox creating a workflow instance, as the worker does once per workflow run (and once per
  replay of a run it evicted): a fresh importer executes the workflow's module and the ``@workflow.defn``
  processing, then the SDK's instance is built inside the sandbox. The order workflow against the ceiling's no-op
  ``CeilingWorkflow``, with the workers' own runners (``worker.sandbox``).
* **replay**: a committed order history (default: a market order filled in the submission's answer, the
  benchmark's shape) replayed through the order workflow: the creation plus every activation the worker runs for
  such an order, the workflow's own code included, and the SDK's Rust core (no server, no activities).

``--sdk-default`` measures the SDK's default sandbox without the kept code objects (the workers before
``worker.sandbox``); ``--profile creation|replay`` prints the cProfile of the order workflow's part instead.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import importlib.util
import pstats
import py_compile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import temporalio.converter
import temporalio.workflow
from temporalio.api.common.v1.message_pb2 import Payloads
from temporalio.api.failure.v1.message_pb2 import Failure
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker._workflow_instance import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _fake_info

from benchmarks.ceiling_workflow import CeilingWorkflow
from worker.sandbox import CEILING_PASSED_THROUGH, cache_workflow_code, workflow_runner
from workflows.order import OrderWorkflow

__all__ = ["instance_details", "main"]

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "workflows" / "histories"


def instance_details(cls: type) -> WorkflowInstanceDetails:
    """What the SDK's ``SandboxedWorkflowRunner.prepare_workflow`` passes to create an instance of ``cls``."""
    # What the SDK's SandboxedWorkflowRunner.prepare_workflow passes (a fake run's info).
    return WorkflowInstanceDetails(
        payload_converter_factory=temporalio.converter.DataConverter.default._new_payload_converter,
        failure_converter_class=temporalio.converter.DataConverter.default.failure_converter_class,
        interceptor_classes=[],
        defn=temporalio.workflow._Definition.must_from_class(cls),
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )


def _best(run: Callable[[], None], n: int, repeat: int) -> float:
    """Milliseconds of CPU per call of ``run``: the best of ``repeat`` rounds of ``n`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(n):
            run()
        best = min(best, (time.process_time() - start) / n * 1000)
    return best


def _runner(cls: type, sdk_default: bool) -> SandboxedWorkflowRunner:
    if sdk_default:
        return SandboxedWorkflowRunner()
    return workflow_runner(CEILING_PASSED_THROUGH) if cls is CeilingWorkflow else workflow_runner()


async def _creation(cls: type, n: int, repeat: int, sdk_default: bool) -> float:
    runner = _runner(cls, sdk_default)
    details = instance_details(cls)

    def create() -> None:
        runner.create_instance(details)

    for _ in range(10):
        create()
    return _best(create, n, repeat)


async def _repeated(history: WorkflowHistory, count: int) -> AsyncIterator[WorkflowHistory]:
    for _ in range(count):
        yield history


async def _replay(history: WorkflowHistory, n: int, repeat: int, sdk_default: bool) -> float:
    replayer = Replayer(
        workflows=[OrderWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=_runner(OrderWorkflow, sdk_default),
    )

    async def replay(count: int) -> None:
        # One replay worker for all: what it costs to start one is not an order's.
        results = await replayer.replay_workflows(_repeated(history, count), raise_on_replay_failure=False)
        assert not results.replay_failures, results.replay_failures

    await replay(5)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        await replay(n)
        best = min(best, (time.process_time() - start) / n * 1000)
    return best


async def _profile(what: str, history: WorkflowHistory, n: int, top: int, sdk_default: bool) -> None:
    prof = cProfile.Profile()
    if what == "creation":
        runner, details = _runner(OrderWorkflow, sdk_default), instance_details(OrderWorkflow)
        runner.create_instance(details)
        prof.enable()
        for _ in range(n):
            runner.create_instance(details)
        prof.disable()
    else:
        # Workflow activations run in the worker's workflow-task threads: profile that thread (one).
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            replayer = Replayer(
                workflows=[OrderWorkflow],
                data_converter=pydantic_data_converter,
                workflow_runner=_runner(OrderWorkflow, sdk_default),
                workflow_task_executor=pool,
            )
            await replayer.replay_workflows(_repeated(history, 5))
            pool.submit(prof.enable).result()
            await replayer.replay_workflows(_repeated(history, n))
            pool.submit(prof.disable).result()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


async def _main(args: argparse.Namespace) -> None:
    if args.sdk_default:
        for cls in (OrderWorkflow, CeilingWorkflow):  # bytecode on disk, as the workers had it before
            spec = importlib.util.find_spec(cls.__module__)
            assert spec is not None and spec.origin is not None
            py_compile.compile(spec.origin, cfile=importlib.util.cache_from_source(spec.origin), doraise=True)
    else:
        cache_workflow_code([OrderWorkflow, CeilingWorkflow])  # as both workers do
    path = HISTORIES / f"{args.history}.json"
    history = WorkflowHistory.from_json(f"bench-{path.stem}", path.read_text())
    if args.profile:
        await _profile(args.profile, history, args.n, args.top, args.sdk_default)
        return
    order = await _creation(OrderWorkflow, args.n, args.repeat, args.sdk_default)
    ceiling = await _creation(CeilingWorkflow, args.n, args.repeat, args.sdk_default)
    replay = await _replay(history, max(args.n // 10, 1), args.repeat, args.sdk_default)
    if args.sdk_default:
        print("the SDK's default sandbox, bytecode read from disk")
    print(f"creation, order workflow:   {order:.3f} ms CPU (best of {args.repeat} x {args.n})")
    print(f"creation, ceiling workflow: {ceiling:.3f} ms CPU")
    print(f"creation, order - ceiling:  {order - ceiling:.3f} ms")
    print(f"replay of {path.stem} ({len(history.events)} events): {replay:.3f} ms CPU")


def main(argv: list[str] | None = None) -> None:
    """Run the micro-benchmark; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_cost", description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=300, help="creations per round (replays: n / 10)")
    p.add_argument("--repeat", type=int, default=5, help="rounds; the best counts")
    p.add_argument(
        "--history", default="paper-market-filled-answer-only-lean", help="a history under tests/workflows/histories"
    )
    p.add_argument("--profile", choices=("creation", "replay"), help="profile the order workflow's part instead")
    p.add_argument(
        "--sdk-default",
        action="store_true",
        help="the SDK's default sandbox and no code cache (the workers before worker.sandbox), to compare",
    )
    p.add_argument("--top", type=int, default=40, help="with --profile: rows to print")
    asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    main()
