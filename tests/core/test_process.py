"""``exit_now``: the exit code is kept and buffered output (logging, stdout) is not lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
