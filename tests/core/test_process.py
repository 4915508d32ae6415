"""``exit_now``: the exit code is kept and buffered output (logging, stdout) is not lost; ``run_loop``: uvloop."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_exit_now_keeps_the_code_and_flushes_what_was_written(tmp_path) -> None:
    log = tmp_path / "out.log"
    script = textwrap.dedent(
        f"""
        import logging, sys
        from core.process import exit_now
        logging.basicConfig(filename={str(log)!r}, level=logging.INFO)
        logging.getLogger("x").info("last words")
        sys.stdout.write("buffered, no newline")
        exit_now(3)
        print("never")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == "buffered, no newline"
    assert "last words" in log.read_text()


def test_the_worker_runs_on_uvloop_and_stops_cleanly_on_its_signal() -> None:
    # ``python -m worker`` (and the benchmark's ceiling worker) run their main coroutine through ``run_loop``: on
    # uvloop, whose wake-ups cost less CPU than asyncio's selector loop. Signal handlers, threads handing results
    # back (the Temporal bridge does) and the result all work on it as on asyncio's loop.
    script = textwrap.dedent(
        """
        import asyncio, os, signal, threading
        from core.process import run_loop

        async def main() -> str:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            handed = loop.create_future()
            threading.Thread(target=lambda: loop.call_soon_threadsafe(handed.set_result, "from a thread")).start()
            assert await handed == "from a thread"
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 10)
            return type(loop).__module__

        print(run_loop(main()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("uvloop")
    main_source = (Path(__file__).parents[2] / "worker" / "__main__.py").read_text()
    assert "exit_now(run_loop(main()))" in main_source
