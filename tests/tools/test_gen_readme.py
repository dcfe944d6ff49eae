"""tools/gen_readme.py: the README's tables are what the script makes from code and recorded measurements.

A converter added without regenerating (coverage tables come from the
registries) or a bench result recorded without regenerating fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_tables_are_up_to_date():
    done = subprocess.run([sys.executable, str(REPO / "tools" / "gen_readme.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, f"README.md is stale; run python tools/gen_readme.py\n{done.stdout[-2000:]}"
