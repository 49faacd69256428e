"""Shared harness: run the Pulumi program (or any function) under mocks and query the resulting graph.

Why a harness: there is no Pulumi CLI, no provider plugin and no cloud on the development machines, so
every layer is tested by running the real program in-process under `pulumi.runtime.set_mocks` and
asserting on the *whole* recorded graph (inputs, computed state, resource options, exports).

Public API (also used by the Kubernetes-layer tests):

- `RecordingMocks` - records every registration and invoke; returns realistic computed outputs for
  `aws:*` types (ids, ARNs, EKS endpoint/CA/OIDC issuer, node group ASG names, ...) and echoes
  `kubernetes:*` inputs with `metadata.name` filled. Extend with `mocks.computed[type] = fn(args)->dict`
  or `mocks.invokes[token] = fn(args)->dict`.
- `OptionsCapturingMonitor` - keeps each raw RegisterResource request (parent, provider,
  dependencies, ignoreChanges, ...) next to the mock's inputs/state.
- `install(stack=..., config=..., preview=...)` - set_mocks + set_all_config; returns (mocks, monitor).
- `run_program(fn)`, `resolve(output)` - run under mocks / read an Output after the run.
- `load_stack_config(stack)` - Pulumi.yaml + stacks/Pulumi.<stack>.yaml as CLI-style strings;
  `stack_value(stack, key, default)` - one value JSON-decoded, for building expectations.
- `stack_names()` - every committed stack file, for parametrisation.
- `run_stack(stack, preview=False, overrides=None)` - runs the real `infra/__main__.py` (runpy, as
  the CLI does) under mocks for a stack and returns a `Graph`.
- `Graph` - `.of_type(t)`, `.one(t, name=None)`, `.named(name)`, `.children(node)`, `.depends_on(a, b)`
  (transitive), `.calls_to(token)`, `.exports` (resolved), `.secret_exports`, `.unknown_exports`.
  Each `Node` has `.inputs` (camelCase, secrets unwrapped; `.secret_inputs` names them), `.state`, `.id`,
  `.parent`, `.provider` / `.provider_urn`, `.dependencies`, `.ignore_changes`, `.request` (raw).
- In preview (`preview=True`) the mocks return no computed outputs, so they are unknown, as with the engine.
- Fixtures (conftest.py): autouse fresh loop + runtime reset; `stack_graph(stack, preview, overrides)`
  caches a stack's graph for the session.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import runpy
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs


def _load_pki() -> Any:
    """testbed/pki.py by path: this harness also runs where the repo root is not importable (the CLI test)."""
    spec = importlib.util.spec_from_file_location("_harness_pki", Path(__file__).parents[1] / "pki.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(module)
    return module


pki = _load_pki()

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
STACKS_DIR = REPO_ROOT / "stacks"

# The account the committed stack files were written for (their adminArns name it): the program refuses
# those placeholder ARNs in any other account (tests/infra/aws/test_live.py plays one).
ACCOUNT_ID = "111122223333"
DEFAULT_REGION = "us-east-1"
# The deploying identity is an assumed role (the usual CI / SSO case): its caller ARN is an STS session
# ARN; getSessionContext maps it to the IAM role ARN, which keeps its path.
CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deployer/ci-session"
CALLER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/automation/deployer"
OIDC_ID = "0123456789ABCDEF0123456789ABCDEF"


# --------------------------------------------------------------------------------------------------
# Mocks
# --------------------------------------------------------------------------------------------------


def _zone_id_prefix(region: str) -> str:
    """`us-east-1` -> `use1`, `eu-west-1` -> `euw1`, `ap-southeast-2` -> `apse2` (AWS's zone-ID scheme)."""
    area, direction, number = region.split("-")
    for word, letter in (("north", "n"), ("south", "s"), ("east", "e"), ("west", "w"), ("central", "c")):
        direction = direction.replace(word, letter)
    return f"{area}{direction}{number}"


def _short(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())[:17].ljust(17, "0")


def _physical(name: str) -> str:
    """Pulumi auto-naming: logical name plus a random suffix (fixed here for determinism)."""
    return f"{name}-a1b2c3d"


_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/flowLog:FlowLog": "fl-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource and invoke; answers with realistic computed outputs (camelCase)."""

    def __init__(
        self,
        region: str = DEFAULT_REGION,
        zones: int = 4,
        caller_arn: str = CALLER_ARN,
        issuer_arn: str = CALLER_ROLE_ARN,
        unknown_in_preview: bool = True,
        live_node_groups: Mapping[str, tuple[int, int, int]] | None = None,
        log_groups: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """`live_node_groups`: node group name (`<cluster>-<group>-<suffix>`, group names without a dash)
        -> (min, max, desired), which also makes that cluster exist; `log_groups`: log group name -> tags."""
        self.region = region
        # Like the engine: in preview a new resource's computed outputs are unknown (only inputs echo).
        self.unknown_in_preview = unknown_in_preview
        self.zone_names = [f"{region}{chr(ord('a') + i)}" for i in range(zones)]
        # Zone names map to IDs per account; here the third name is the zone EKS refuses in us-east-1.
        self.zone_ids = [f"{_zone_id_prefix(region)}-az{i + 1}" for i in range(zones)]
        self.live_node_groups = dict(live_node_groups or {})
        self.log_groups = {k: dict(v) for k, v in (log_groups or {}).items()}
        self.ami_release = "{version}.4-20261115"
        self.caller_arn = caller_arn
        self.issuer_arn = issuer_arn
        self.resources: list[MockResourceArgs] = []
        self.calls: list[MockCallArgs] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self.computed: dict[str, Callable[[MockResourceArgs], dict]] = {
            "aws:ec2/vpc:Vpc": self._vpc,
            "aws:ec2/eip:Eip": lambda a: {"allocationId": self._id(a), "publicIp": "203.0.113.10"},
            "aws:iam/role:Role": self._role,
            "aws:iam/policy:Policy": lambda a: {
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:policy/{a.inputs.get('name') or _physical(a.name)}"
            },
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider": self._oidc,
            "aws:kms/key:Key": lambda a: {
                "keyId": f"{_short(a.name)}-key",
                "arn": f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{_short(a.name)}-key",
            },
            "aws:cloudwatch/logGroup:LogGroup": lambda a: {
                "name": a.inputs.get("name") or _physical(a.name),
                "arn": f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:"
                f"{a.inputs.get('name') or _physical(a.name)}",
            },
            "aws:eks/cluster:Cluster": self._cluster,
            "aws:eks/nodeGroup:NodeGroup": self._node_group,
            "aws:eks/addon:Addon": lambda a: {
                "arn": f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:addon/{a.inputs.get('clusterName')}/"
                f"{a.inputs.get('addonName')}/x",
            },
            "aws:eks/accessEntry:AccessEntry": lambda a: {
                "accessEntryArn": f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:access-entry/{a.name}",
                "type": a.inputs.get("type", "STANDARD"),
            },
            "aws:ecr/repository:Repository": lambda a: {
                "arn": f"arn:aws:ecr:{self.region}:{ACCOUNT_ID}:repository/{a.inputs['name']}",
                "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{a.inputs['name']}",
            },
            "aws:ec2/launchTemplate:LaunchTemplate": lambda a: {
                "latestVersion": 1,
                "defaultVersion": 1,
                "name": a.inputs.get("name") or _physical(a.name),
            },
            # pulumi-tls: real PEMs (testbed/pki.py), so Secrets carry material Dask and ssl can load
            "tls:index/privateKey:PrivateKey": self._private_key,
            "tls:index/selfSignedCert:SelfSignedCert": self._self_signed,
            "tls:index/certRequest:CertRequest": self._cert_request,
            "tls:index/locallySignedCert:LocallySignedCert": self._locally_signed,
        }
        self.invokes: dict[str, Callable[[MockCallArgs], dict]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._zones,
            "aws:eks/getClusters:getClusters": lambda a: {
                "id": self.region,
                "names": sorted({n.rsplit("-", 2)[0] for n in self.live_node_groups}),
            },
            "aws:eks/getNodeGroups:getNodeGroups": lambda a: {
                "id": a.args.get("clusterName"),
                "clusterName": a.args.get("clusterName"),
                "names": sorted(
                    n for n in self.live_node_groups if n.startswith(f"{a.args.get('clusterName')}-")
                ),
            },
            "aws:eks/getNodeGroup:getNodeGroup": self._live_node_group,
            "aws:cloudwatch/getLogGroups:getLogGroups": lambda a: {
                "id": self.region,
                "logGroupNames": sorted(
                    n for n in self.log_groups if n.startswith(a.args.get("logGroupNamePrefix", ""))
                ),
                "arns": [],
            },
            "aws:cloudwatch/getLogGroup:getLogGroup": lambda a: {
                "id": a.args["name"],
                "name": a.args["name"],
                "arn": f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{a.args['name']}",
                "tags": self.log_groups[a.args["name"]],
                "retentionInDays": 0,
            },
            "aws:ssm/getParameter:getParameter": self._ssm_parameter,
            "aws:index/getCallerIdentity:getCallerIdentity": lambda a: {
                "id": ACCOUNT_ID,
                "accountId": ACCOUNT_ID,
                "arn": self.caller_arn,
                "userId": "AROAEXAMPLE:ci-session",
            },
            "aws:index/getPartition:getPartition": lambda a: {
                "id": "aws",
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            },
            "aws:index/getRegion:getRegion": lambda a: {
                "id": self.region,
                "name": self.region,
                "region": self.region,
                "endpoint": f"ec2.{self.region}.amazonaws.com",
                "description": "mock region",
            },
            "aws:iam/getSessionContext:getSessionContext": self._session_context,
            "aws:eks/getAddonVersion:getAddonVersion": lambda a: {
                "id": a.args.get("addonName"),
                "addonName": a.args.get("addonName"),
                "kubernetesVersion": a.args.get("kubernetesVersion"),
                "version": f"v{a.args.get('kubernetesVersion')}.0-{a.args.get('addonName')}-eksbuild.1",
            },
        }

    # -- helpers -----------------------------------------------------------------------------------
    def _id(self, args: MockResourceArgs) -> str:
        return _ID_PREFIX.get(args.typ, "") + _short(args.name)

    def _vpc(self, a: MockResourceArgs) -> dict:
        return {
            "defaultSecurityGroupId": f"sg-{_short(a.name + 'default')}",
            "mainRouteTableId": f"rtb-{_short(a.name + 'main')}",
            "defaultNetworkAclId": f"acl-{_short(a.name)}",
        }

    def _role(self, a: MockResourceArgs) -> dict:
        name = a.inputs.get("name") or _physical(a.name)
        arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        return {"name": name, "arn": arn, "uniqueId": "AROA" + _short(name)}

    def _oidc(self, a: MockResourceArgs) -> dict:
        url = str(a.inputs.get("url", "")).removeprefix("https://")
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{url}"}

    def _cluster(self, a: MockResourceArgs) -> dict:
        name = a.inputs.get("name") or _physical(a.name)
        issuer = f"https://oidc.eks.{self.region}.amazonaws.com/id/{OIDC_ID}"
        vpc_config = dict(a.inputs.get("vpcConfig") or {})
        vpc_config.update(clusterSecurityGroupId="sg-0c1u5t3r", vpcId="vpc-from-subnets")
        return {
            "name": name,
            "arn": f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:cluster/{name}",
            "endpoint": f"https://{OIDC_ID}.gr7.{self.region}.eks.amazonaws.com",
            "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUMvakNDQWVhZ0F3"},
            "identities": [{"oidcs": [{"issuer": issuer}]}],
            "platformVersion": "eks.1",
            "status": "ACTIVE",
            "clusterId": "c1u5t3r-id",
            "vpcConfig": vpc_config,
        }

    def _node_group(self, a: MockResourceArgs) -> dict:
        name = a.inputs.get("nodeGroupName") or _physical(a.name)
        cluster = a.inputs.get("clusterName", "cluster")
        return {
            "nodeGroupName": name,
            "arn": f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:nodegroup/{cluster}/{name}/x",
            "status": "ACTIVE",
            "resources": [
                {
                    "autoscalingGroups": [{"name": f"eks-{name}-0ac7d2f1-1b2c-3d4e"}],
                    "remoteAccessSecurityGroupId": "",
                }
            ],
        }

    def _zones(self, a: MockCallArgs) -> dict:
        excluded = set(a.args.get("excludeZoneIds") or [])
        pairs = [(n, z) for n, z in zip(self.zone_names, self.zone_ids, strict=True) if z not in excluded]
        return {
            "id": self.region,
            "names": [n for n, _ in pairs],
            "zoneIds": [z for _, z in pairs],
            "groupNames": [self.region],
        }

    def _live_node_group(self, a: MockCallArgs) -> dict:
        name = a.args["nodeGroupName"]
        low, high, desired = self.live_node_groups[name]
        return {
            "id": f"{a.args['clusterName']}:{name}",
            "clusterName": a.args["clusterName"],
            "nodeGroupName": name,
            "scalingConfigs": [{"minSize": low, "maxSize": high, "desiredSize": desired}],
            "tags": {},
        }

    def _ssm_parameter(self, a: MockCallArgs) -> dict:
        name = a.args["name"]
        version = name.split("/")[5]  # /aws/service/eks/optimized-ami/<version>/amazon-linux-2023/...
        value = self.ami_release.format(version=version)
        return {"id": name, "name": name, "type": "String", "value": value, "insecureValue": value}

    def _session_context(self, a: MockCallArgs) -> dict:
        arn = a.args.get("arn")
        # AWS maps an assumed-role session ARN to its role ARN and passes any other ARN through.
        issuer = self.issuer_arn if ":assumed-role/" in str(arn) else arn
        return {"id": arn, "arn": arn, "issuerArn": issuer, "issuerId": "AROAEX", "issuerName": "deployer"}

    def _private_key(self, a: MockResourceArgs) -> dict:
        _, key_pem = pki.private_key_pem()
        return {"privateKeyPem": key_pem, "publicKeyPem": pki.public_key_of(key_pem)}

    def _self_signed(self, a: MockResourceArgs) -> dict:
        inputs = unsecret(a.inputs)
        name = (inputs.get("subject") or {}).get("commonName", a.name)
        return {"certPem": pki.make_ca(name, key_pem=inputs["privateKeyPem"]).cert, "readyForRenewal": False}

    def _cert_request(self, a: MockResourceArgs) -> dict:
        inputs = unsecret(a.inputs)
        name = (inputs.get("subject") or {}).get("commonName", a.name)
        csr = pki.make_csr(inputs["privateKeyPem"], name, tuple(inputs.get("dnsNames") or ()))
        return {"certRequestPem": csr}

    def _locally_signed(self, a: MockResourceArgs) -> dict:
        inputs = unsecret(a.inputs)
        ca = pki.Pem(inputs["caCertPem"], inputs["caPrivateKeyPem"])
        cert = pki.sign_csr(ca, inputs["certRequestPem"], tuple(inputs.get("allowedUses") or ()))
        return {"certPem": cert, "readyForRenewal": False}

    # -- Mocks API ---------------------------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict]:
        with self._lock:
            self.resources.append(args)
        self._local.last = args
        state = dict(args.inputs)
        if args.typ.startswith("kubernetes:"):
            meta = dict(state.get("metadata") or {})
            meta.setdefault("name", _physical(args.name))
            state["metadata"] = meta
            return f"{meta.get('namespace', 'default')}/{meta['name']}", state
        if self.unknown_in_preview and pulumi.runtime.is_dry_run():
            return "", state
        rid = self._id(args)
        if args.typ.startswith("aws:"):
            service = args.typ.split(":")[1].split("/")[0]
            state.setdefault("arn", f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{_short(args.name)}")
            state.setdefault("tagsAll", dict(state.get("tags") or {}))
        fill = self.computed.get(args.typ)
        if fill is not None:
            state.update(fill(args))
        return rid, state

    def take_last(self) -> MockResourceArgs | None:
        """The args new_resource saw last on this thread (the monitor pairs it with its request)."""
        last = getattr(self._local, "last", None)
        self._local.last = None
        return last

    def call(self, args: MockCallArgs) -> dict:
        with self._lock:
            self.calls.append(args)
        handler = self.invokes.get(args.token)
        return handler(args) if handler is not None else {}


class OptionsCapturingMonitor(MockMonitor):
    """MockMonitor keeping the raw RegisterResource requests: resource options are not in the mock args."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.records: list[tuple[str, Any, MockResourceArgs | None, str, dict]] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        urn = self.make_urn(request.parent, request.type, request.name)
        args = self.mocks.take_last() if isinstance(self.mocks, RecordingMocks) else None
        with self._lock:
            registration = self.resources[urn]
            self.records.append((urn, request, args, registration.id or "", registration.state))
        return response


# --------------------------------------------------------------------------------------------------
# Running things under mocks
# --------------------------------------------------------------------------------------------------


def install(
    stack: str = "test",
    config: Mapping[str, str] | None = None,
    preview: bool = False,
    project: str = "adaptive-dask",
    secret_keys: Iterable[str] = (),
    mocks: RecordingMocks | None = None,
) -> tuple[RecordingMocks, OptionsCapturingMonitor]:
    """set_mocks + set_all_config in one go. Config values must be CLI-style strings."""
    for key, value in (config or {}).items():
        if not isinstance(value, str):
            raise TypeError(f"config {key} must be a CLI-style string, got {type(value).__name__}")
    mocks = mocks or RecordingMocks()
    monitor = OptionsCapturingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config or {}), secret_keys=list(secret_keys))
    return mocks, monitor


def run_program(fn: Callable[[], Any]) -> Any:
    """Run fn under the active mocks; return its result once every registration has settled."""
    box: dict[str, Any] = {}

    @pulumi.runtime.test
    def _run() -> Any:
        box["result"] = fn()

    _run()
    return box.get("result")


def resolve(output: Any) -> Any:
    """Test-only: an Output's plain value after a run (None if unknown, as in preview)."""
    box: dict[str, Any] = {}

    @pulumi.runtime.test
    def _run() -> Any:
        return pulumi.Output.from_input(output).apply(lambda v: box.__setitem__("v", v))

    _run()
    return box.get("v")


# --------------------------------------------------------------------------------------------------
# Stack files, read as the CLI would hand them to the program
# --------------------------------------------------------------------------------------------------


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def stack_names() -> list[str]:
    """Every committed stack (stacks/Pulumi.<stack>.yaml): a new file is covered automatically."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def load_stack_config(stack: str, root: Path = REPO_ROOT) -> tuple[str, dict[str, str], list[str]]:
    """(project, {full key: CLI string}, secret keys) for a stack: Pulumi.yaml defaults + stack file."""
    project_file = yaml.safe_load((root / "Pulumi.yaml").read_text())
    project = project_file["name"]

    def full(key: str) -> str:
        return key if ":" in key else f"{project}:{key}"

    merged: dict[str, Any] = {}
    secrets: list[str] = []
    for key, decl in (project_file.get("config") or {}).items():
        if isinstance(decl, dict) and ("value" in decl or "default" in decl):
            merged[full(key)] = decl.get("value", decl.get("default"))
        elif not isinstance(decl, dict):
            merged[full(key)] = decl
    config_dir = root / project_file.get("stackConfigDir", ".")
    stack_file = yaml.safe_load((config_dir / f"Pulumi.{stack}.yaml").read_text()) or {}
    for key, value in (stack_file.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.append(full(key))
            value = "<secret-placeholder>"  # cannot be decrypted offline
        merged[full(key)] = value
    return project, {k: _encode(v) for k, v in merged.items()}, secrets


def stack_value(stack: str, key: str, default: Any = None) -> Any:
    """A stack's config value as the program sees it, JSON-decoded where it is JSON (for expectations)."""
    _, config, _ = load_stack_config(stack)
    if key not in config:
        return default
    try:
        return json.loads(config[key])
    except json.JSONDecodeError:
        return config[key]


# --------------------------------------------------------------------------------------------------
# The recorded graph
# --------------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One registered resource: what the program sent (inputs, options) and what the mock returned."""

    urn: str
    type: str
    name: str
    id: str
    custom: bool
    inputs: dict
    secret_inputs: set[str]
    state: dict
    parent: str
    provider: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    ignore_changes: list[str]
    protect: bool
    request: Any = field(repr=False)

    @property
    def provider_urn(self) -> str:
        """The provider reference without its `::<id>` suffix."""
        return self.provider.rsplit("::", 1)[0] if self.provider else ""

    @property
    def all_dependencies(self) -> set[str]:
        deps = set(self.dependencies)
        for urns in self.property_dependencies.values():
            deps.update(urns)
        return deps


@dataclass
class Graph:
    nodes: list[Node]
    exports: dict[str, Any]
    secret_exports: set[str]
    unknown_exports: set[str]
    calls: list[MockCallArgs]
    mocks: RecordingMocks

    def __post_init__(self) -> None:
        self.by_urn = {n.urn: n for n in self.nodes}

    def of_type(self, typ: str) -> list[Node]:
        return [n for n in self.nodes if n.type == typ]

    def one(self, typ: str, name: str | None = None) -> Node:
        found = [n for n in self.of_type(typ) if name is None or n.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one {typ} {name or ''}, found {[n.name for n in found]}")
        return found[0]

    def named(self, name: str) -> Node:
        found = [n for n in self.nodes if n.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name}, found {len(found)}")
        return found[0]

    def children(self, node: Node) -> list[Node]:
        return [n for n in self.nodes if n.parent == node.urn]

    def depends_on(self, a: Node, b: Node) -> bool:
        """True if a (transitively, through dependencies and children of components) waits for b."""
        seen: set[str] = set()
        stack = list(a.all_dependencies)
        while stack:
            urn = stack.pop()
            if urn == b.urn:
                return True
            if urn in seen or urn not in self.by_urn:
                continue
            seen.add(urn)
            stack.extend(self.by_urn[urn].all_dependencies)
        return False

    def calls_to(self, token: str) -> list[MockCallArgs]:
        return [c for c in self.calls if c.token == token]


_SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SECRET_SIG[0]) == _SECRET_SIG[1]


def unsecret(value: Any) -> Any:
    """Secret inputs reach the mock wrapped in Pulumi's secret envelope; return the plain value."""
    if _is_secret(value):
        return unsecret(value.get("value"))
    if isinstance(value, dict):
        return {k: unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unsecret(v) for v in value]
    return value


def _node(urn: str, request: Any, args: MockResourceArgs | None, rid: str, state: dict) -> Node:
    raw = dict(args.inputs) if args is not None else {}
    return Node(
        urn=urn,
        type=request.type,
        name=request.name,
        id=rid,
        custom=bool(request.custom),
        inputs=unsecret(raw),
        secret_inputs={k for k, v in raw.items() if _is_secret(v)},
        state=dict(state or {}),
        parent=request.parent,
        provider=request.provider,
        dependencies=list(request.dependencies),
        property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
        ignore_changes=list(request.ignoreChanges),
        protect=bool(request.protect),
        request=request,
    )


async def _collect_exports(into: dict[str, Any], secret: set[str], unknown: set[str]) -> None:
    root = pulumi.runtime.get_root_resource()
    for name, value in dict(getattr(root, "outputs", {}) or {}).items():
        out = pulumi.Output.from_input(value)
        if await out.is_secret():
            secret.add(name)
        if not await out.is_known():
            unknown.add(name)
            continue
        into[name] = await out.future()


def run_graph(fn: Callable[[], Any], mocks: RecordingMocks, monitor: OptionsCapturingMonitor) -> Graph:
    """Run fn under installed mocks; return the graph plus the resolved stack exports."""
    exports: dict[str, Any] = {}
    secret: set[str] = set()
    unknown: set[str] = set()

    def program() -> Any:
        fn()
        return pulumi.Output.from_input(asyncio.ensure_future(_collect_exports(exports, secret, unknown)))

    run_program(program)
    nodes = [_node(*record) for record in monitor.records]
    return Graph(nodes, exports, secret, unknown - set(exports), list(mocks.calls), mocks)


def run_main() -> None:
    """Execute infra/__main__.py exactly as the CLI's language host does (runpy of the directory)."""
    runpy.run_path(str(INFRA_DIR), run_name="__main__")


def run_stack(
    stack: str,
    preview: bool = False,
    overrides: Mapping[str, str] | None = None,
    mocks: RecordingMocks | None = None,
) -> Graph:
    """Run the real program for a committed stack file under mocks; return the recorded Graph."""
    project, config, secrets = load_stack_config(stack)
    config.update(overrides or {})
    mocks = mocks or RecordingMocks(region=config.get("aws:region", DEFAULT_REGION))
    mocks, monitor = install(
        stack=stack, config=config, preview=preview, project=project, secret_keys=secrets, mocks=mocks
    )
    return run_graph(run_main, mocks, monitor)


def registered_before_failure(
    stack: str, mocks: RecordingMocks, overrides: Mapping[str, str] | None = None
) -> tuple[Exception, list[str]]:
    """Run a stack that must stop on bad config or live state; return (error, types registered before it)."""
    from infra.errors import ConfigError, LiveStateError

    project, config, secrets = load_stack_config(stack)
    config.update(overrides or {})
    mocks, monitor = install(stack=stack, config=config, project=project, secret_keys=secrets, mocks=mocks)
    try:
        run_graph(run_main, mocks, monitor)
    except (ConfigError, LiveStateError) as error:
        return error, [record[1].type for record in monitor.records]
    raise AssertionError(f"stack {stack!r} ran to the end; a ConfigError or LiveStateError was expected")
