"""``brokers/README.md``, "How to add a broker": its step 1 (the copy commands), run as written on a copy of the
tree, gives a broker whose copied tests pass (the "not written yet" checks), so a newcomer's first step works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The README's example name, and the one the copy here uses (the example's own folder may exist by now).
EXAMPLE, NAME = "oanda", "acmebroker"

_SKIP = shutil.ignore_patterns(".git", ".venv", "data", "*.egg-info", "__pycache__", ".*_cache", "results")


def _step_one() -> str:
    text = (ROOT / "brokers" / "README.md").read_text()
    section = text.split("### 1. Copy", 1)[1].split("\n### ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match is not None, "brokers/README.md step 1 has no bash block"
    return match.group(1)


def test_step_one_names_the_template_folders_and_renames_the_test_module() -> None:
    commands = _step_one()
    for folder in ("brokers/_template", "devstack/venues/_template", "tests/brokers/_template"):
        assert f"cp -r {folder} " in commands, folder
    assert f"test_{EXAMPLE}_contract.py" in commands


def test_the_copy_commands_give_a_broker_whose_copied_tests_pass(tmp_path: Path, postgres_admin_url: str) -> None:
    tree = tmp_path / "exodus"
    shutil.copytree(ROOT, tree, ignore=_SKIP, symlinks=True)
    assert not (tree / "brokers" / NAME).exists()
    commands = _step_one().replace(EXAMPLE, NAME)
    done = subprocess.run(["bash", "-e", "-c", commands], cwd=tree, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for folder in (f"brokers/{NAME}", f"devstack/venues/{NAME}", f"tests/brokers/{NAME}"):
        assert (tree / folder).is_dir(), folder
    leftovers = [
        str(p.relative_to(tree))
        for folder in (f"brokers/{NAME}", f"devstack/venues/{NAME}", f"tests/brokers/{NAME}")
        for p in (tree / folder).rglob("*.py")
        if re.search("template", p.read_text(), re.I)
    ]
    assert not leftovers, leftovers
    # The copy's tests, with the copy's packages first on the path (python -m puts the working directory there),
    # on this session's Postgres server.
    env = {**os.environ, "DATABASE_URL": postgres_admin_url, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'basetemp'}",
            f"tests/brokers/{NAME}",
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = out.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None and int(passed.group(1)) >= 12, summary  # every "not written yet" check ran
    assert "failed" not in summary and "error" not in summary, summary
