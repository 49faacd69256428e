"""The workers' data identity, as configured (`dask.dataBuckets`, `dataKmsKeyArns`, `workerPolicyArns`,
`workerServiceAccountAnnotations`): validated here, before anything is created.

Buckets are named exactly (S3's own naming rules, no wildcard) and scoped by an optional prefix, so the
role's policy (infra/aws/iam.py `data_access_policy`) can never grant more than the entries say.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from infra.config.reader import Field, Section

ACCESS_LEVELS = ("read", "readwrite")
BUCKET_ENTRY_DEFAULTS = {"bucket": None, "prefix": "", "access": "read"}
# S3 general purpose bucket names (AWS "Bucket naming rules"): 3-63 characters of a-z, 0-9, '.' and '-',
# starting and ending with a letter or digit; no '..', not an IP address, and reserved prefixes/suffixes.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# An object-key prefix: printable, no wildcard (IAM would read '*' and '?' as patterns), no leading '/'.
_PREFIX_RE = re.compile(r"^[^*?/\s][^*?\s]*$")
_KMS_KEY_ARN_RE = re.compile(
    r"^arn:aws(-cn|-us-gov)?:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$"
)
_POLICY_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::([0-9]{12}|aws):policy/[A-Za-z0-9+=,.@_/-]+$")
# Kubernetes annotation keys: an optional DNS-subdomain prefix and a name of at most 63 characters.
_ANNOTATION_KEY_RE = re.compile(
    r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


KMS_KEY_ARN_FORM = "a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)"
POLICY_ARN_FORM = "an IAM policy ARN (arn:aws:iam::<account|aws>:policy/<name>)"


@dataclass(frozen=True)
class DataBucket:
    bucket: str
    prefix: str  # "" (the whole bucket) or a folder ending in "/"
    access: str  # "read" or "readwrite"

    @property
    def writes(self) -> bool:
        return self.access == "readwrite"


@dataclass(frozen=True)
class DataAccess:
    buckets: tuple[DataBucket, ...] = ()
    kms_key_arns: tuple[str, ...] = ()
    policy_arns: tuple[str, ...] = ()  # extra managed policies for the workers' role
    service_account_annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def role_needed(self) -> bool:
        """The aws target gives workers a role (and installs the Pod Identity agent) only when asked."""
        return bool(self.buckets or self.policy_arns)


def _bucket_name(field: Field) -> str:
    name = field.string() if field.value is not None else ""
    rules = "an S3 bucket name: 3-63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit"
    if not _BUCKET_RE.match(name) or ".." in name:
        raise field.fail(f"must be {rules} (no wildcard: name each bucket)")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        raise field.fail("must not be formatted as an IP address (S3 refuses it)")
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        raise field.fail(
            f"must not start with {', '.join(_RESERVED_PREFIXES)} "
            f"or end with {', '.join(_RESERVED_SUFFIXES)} (reserved by S3)"
        )
    return name


def _prefix(field: Field) -> str:
    prefix = field.string()
    if prefix == "":
        return ""
    if not _PREFIX_RE.match(prefix):
        raise field.fail(
            "must be an object-key prefix such as 'climate/2024/': no '*' or '?', no leading '/'"
        )
    return prefix if prefix.endswith("/") else prefix + "/"  # a folder: 'raw' must not also grant 'rawdata'


def _data_buckets(field: Field) -> tuple[DataBucket, ...]:
    entries: list[DataBucket] = []
    for item in field.items():
        s = Section(item.key, item.value, BUCKET_ENTRY_DEFAULTS)
        entry = DataBucket(
            bucket=_bucket_name(s["bucket"]),
            prefix=_prefix(s["prefix"]),
            access=s["access"].choice(ACCESS_LEVELS),
        )
        if any((e.bucket, e.prefix) == (entry.bucket, entry.prefix) for e in entries):
            raise item.fail(f"duplicates another entry for s3://{entry.bucket}/{entry.prefix}")
        entries.append(entry)
    return tuple(entries)


def _arns(field: Field, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    arns = field.strings()
    for item, arn in zip(field.items(), arns, strict=True):
        if not pattern.match(arn):
            raise item.fail(f"must be {what}")
    return arns


def _annotations(field: Field) -> Mapping[str, str]:
    raw = field.string_map()
    for k in raw:
        if len(k) > 253 or not _ANNOTATION_KEY_RE.match(k):
            raise Field(f"{field.key}.{k}", k).fail(
                "must be a Kubernetes annotation key, e.g. example.com/role"
            )
    return MappingProxyType(dict(raw))


def parse_data_access(s: Section, target: str) -> DataAccess:
    """The four keys; the AWS ones need the aws target, the annotations the local one (on EKS the Pod
    Identity association is the program's, and an IRSA annotation beside it would be a second identity)."""
    access = DataAccess(
        buckets=_data_buckets(s["dataBuckets"]),
        kms_key_arns=_arns(s["dataKmsKeyArns"], _KMS_KEY_ARN_RE, KMS_KEY_ARN_FORM),
        policy_arns=_arns(s["workerPolicyArns"], _POLICY_ARN_RE, POLICY_ARN_FORM),
        service_account_annotations=_annotations(s["workerServiceAccountAnnotations"]),
    )
    if target != "aws":
        for name in ("dataBuckets", "dataKmsKeyArns", "workerPolicyArns"):
            if s[name].value:
                raise s[name].fail(
                    "needs target aws (the program makes the workers' role there); on other clusters "
                    "give the workers' ServiceAccount its identity with workerServiceAccountAnnotations"
                )
    elif access.service_account_annotations:
        raise s["workerServiceAccountAnnotations"].fail(
            "is for the local target; on aws the workers' identity is the Pod Identity association that "
            "dataBuckets / workerPolicyArns make"
        )
    if access.kms_key_arns and not access.buckets:
        raise s["dataKmsKeyArns"].fail("only decrypts objects of dataBuckets: list the buckets too")
    return access
