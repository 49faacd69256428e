"""Start the real pack process the way the CLI does (`python -m pulumi.policy <engine> policy`, with
PULUMI_STACK / PULUMI_CONFIG in its environment) and talk to it over the analyzer gRPC protocol.

This covers what the in-process tests cannot: that `policy/__main__.py` imports from its own directory,
picks the enforcement level from the stack, and that violations and preview unknowns come back as the
engine will see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

ROOT = Path(__file__).resolve().parents[2]
MANDATORY, ADVISORY = 1, 0  # pulumirpc.EnforcementLevel


def _read_port(proc: subprocess.Popen) -> int:
    """The pack prints its port on stdout; guard the read so a broken pack fails instead of hanging."""
    box: dict[str, bytes] = {}
    reader = threading.Thread(target=lambda: box.__setitem__("line", proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(120)
    line = box.get("line", b"").strip()
    if not line.isdigit():
        proc.kill()
        raise AssertionError(f"pack did not start: {line!r} {proc.stderr.read().decode()[-2000:]}")
    return int(line)


@pytest.fixture
def start_pack() -> Iterator:
    procs: list[subprocess.Popen] = []
    channels: list[grpc.Channel] = []

    def start(stack: str, config: dict[str, str] | None = None) -> analyzer_pb2_grpc.AnalyzerStub:
        env = {
            **os.environ,
            "PULUMI_STACK": stack,
            "PULUMI_PROJECT": "adaptive-dask",
            "PULUMI_DRY_RUN": "true",
        }
        env["PULUMI_CONFIG"] = json.dumps(config or {})
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(ROOT / "policy")],
            cwd=ROOT / "policy",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        channel = grpc.insecure_channel(f"127.0.0.1:{_read_port(proc)}")
        channels.append(channel)
        return analyzer_pb2_grpc.AnalyzerStub(channel)

    yield start
    for channel in channels:
        channel.close()
    for proc in procs:
        proc.terminate()
        proc.wait(30)


def struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def levels(stub: analyzer_pb2_grpc.AnalyzerStub) -> dict[str, int]:
    info = stub.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "adaptive-dask-guardrails"
    return {p.name: p.enforcementLevel for p in info.policies}


def test_prod_pack_is_all_mandatory_and_dev_relaxes_only_security(start_pack):
    prod = levels(start_pack("prod"))
    assert len(prod) == 15 and set(prod.values()) == {MANDATORY}
    dev = levels(start_pack("dev"))
    assert dev["eks-audit-logging"] == ADVISORY and dev["imdsv2-required"] == ADVISORY
    assert dev["imds-hop-limit-one"] == ADVISORY
    assert dev["dask-namespace-default-deny"] == ADVISORY
    assert dev["dask-worker-replicas-unmanaged"] == MANDATORY
    assert dev["cluster-autoscaler-matches-cluster"] == MANDATORY
    # the program's own production flag makes any stack strict
    assert set(levels(start_pack("qa", {"adaptive-dask:production": "true"})).values()) == {MANDATORY}


def test_violation_and_preview_unknown_over_the_wire(start_pack):
    stub = start_pack("prod")
    lt = "aws:ec2/launchTemplate:LaunchTemplate"
    urn = f"urn:pulumi:prod::adaptive-dask::{lt}::nodes"

    def analyze(props: dict) -> analyzer_pb2.AnalyzeResponse:
        return stub.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type=lt,
                properties=struct(props),
                urn=urn,
                name="nodes",
                options=analyzer_pb2.AnalyzerResourceOptions(),
            )
        )

    bad = analyze({"metadataOptions": {"httpTokens": "optional"}})
    (diag,) = [d for d in bad.diagnostics if d.policyName == "imdsv2-required"]
    assert diag.enforcementLevel == MANDATORY and "httpTokens" in diag.message
    assert diag.urn == ""  # resource policies leave it empty: the engine attributes it to `urn`
    good = {"httpTokens": "required", "httpPutResponseHopLimit": 1}
    assert [d for d in analyze({"metadataOptions": good}).diagnostics] == []
    # unknown in preview: a "can't run during preview" note at advisory level, never a violation
    (note,) = analyze({"metadataOptions": {**good, "httpTokens": UNKNOWN_STRING_VALUE}}).diagnostics
    assert note.enforcementLevel == ADVISORY and "during preview" in note.message


def test_stack_rule_over_the_wire(start_pack):
    stub = start_pack("dev")
    cluster = analyzer_pb2.AnalyzerResource(
        type="aws:eks/cluster:Cluster", urn="urn:c", name="c", properties=struct({"version": "1.35"})
    )
    ca = analyzer_pb2.AnalyzerResource(
        type="kubernetes:helm.sh/v3:Release",
        urn="urn:ca",
        name="ca",
        properties=struct({"chart": "cluster-autoscaler", "values": {"image": {"tag": "v1.34.5"}}}),
    )
    response = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[cluster, ca]))
    (diag,) = [d for d in response.diagnostics if d.policyName == "cluster-autoscaler-matches-cluster"]
    assert diag.urn == "urn:ca" and diag.enforcementLevel == MANDATORY  # mandatory even in dev
