"""Make `policy/` importable (the pack's own layout: the CLI runs policy/__main__.py with policy/ on
sys.path) and reuse the infra tests' fresh-Pulumi-runtime fixture for the graph tests."""

from __future__ import annotations

import sys
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

from tests.infra.conftest import fresh_pulumi_runtime  # noqa: E402, F401  (fixture re-export)
