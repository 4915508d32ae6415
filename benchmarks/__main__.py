"""``python -m benchmarks`` (``make bench``): see ``python -m benchmarks --help``."""

from benchmarks.run import main

if __name__ == "__main__":
    from core.process import exit_now

    exit_now(main())  # the Temporal client's threads must not meet interpreter teardown; see core/process.py
