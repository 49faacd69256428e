"""Entry point the Pulumi CLI runs for `--policy-pack policy`: build the pack for the current stack.

Only wiring lives here: constructing PolicyPack starts the analyzer's gRPC server and blocks, so tests
import `adaptive_dask_policy` instead and never this file.
"""

import os

from adaptive_dask_policy import PACK_NAME, build_policies, is_strict
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name=PACK_NAME,
    policies=build_policies(is_strict(os.environ.get("PULUMI_STACK"), os.environ.get("PULUMI_CONFIG"))),
    enforcement_level=EnforcementLevel.MANDATORY,
)
