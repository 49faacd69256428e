"""`EksCluster`: the control plane and everything the next layers need to talk to it.

Decisions (why):
- Authentication mode API with explicit access entries; the creator-admin bootstrap is off, because an
  implicit entry is invisible to Pulumi and collides with an explicit one. The deploying principal gets
  an explicit cluster-admin entry (its IAM role ARN behind the STS session, read by `infra.live`),
  unless `cluster.adminArns` already lists it: EKS allows one access entry per principal.
- Secrets are envelope-encrypted with a customer key that rotates; control-plane logs go to a log group
  created *before* the cluster so EKS cannot create it first without a retention.
- The self-managed bootstrap addons are off; vpc-cni and kube-proxy are managed addons created before any
  node (nodes stay NotReady without a CNI), coredns after the nodes exist (its pods need somewhere to run).
  vpc-cni manages ENIs with its own IRSA role, not the node role (AWS's recommendation): a pod that reaches
  the node role gets no network-management rights.
- The kubeconfig uses `aws eks get-token` (exec), never a stored token, and is a secret output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws import iam
from infra.aws.component import AwsComponent
from infra.aws.tags import name_tag
from infra.config.aws import PREVIEW_GROUP
from infra.config.settings import ClusterConfig

PRE_NODE_ADDONS = ("vpc-cni", "kube-proxy")


def vpc_cni_configuration() -> str:
    """`configuration_values` of the EKS `vpc-cni` addon: turns on its NetworkPolicy enforcement.

    Without it EKS accepts NetworkPolicy objects and enforces none. The key is `enableNetworkPolicy` with
    the STRING "true" (the addon schema's booleans are strings), available from addon v1.14.0-eksbuild.3
    and unchanged since (EKS user guide, "Restrict Pod network traffic with Kubernetes network policies").
    """
    return json.dumps({"enableNetworkPolicy": "true"}, sort_keys=True)


POST_NODE_ADDONS = ("coredns",)


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> dict[str, Any]:
    """A kubeconfig whose user runs `aws eks get-token` on every use (the `aws` CLI must be on PATH)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "preferences": {},
        "users": [
            {
                "name": cluster_name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "aws",
                        "args": [
                            "eks",
                            "get-token",
                            "--cluster-name",
                            cluster_name,
                            "--region",
                            region,
                            "--output",
                            "json",
                        ],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
    }


def log_group_name(cluster_name: str) -> str:
    """The name EKS writes control-plane logs to; it must exist (with a retention) before the cluster."""
    return f"/aws/eks/{cluster_name}/cluster"


def principal_key(arn: str) -> str:
    """A stable short id for a principal ARN, so reordering adminArns does not replace access entries."""
    return hashlib.sha256(arn.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class EksClusterArgs:
    config: ClusterConfig
    cluster_name: str
    region: str
    subnet_ids: pulumi.Input[Sequence[str]]
    partition: pulumi.Input[str]
    deployer_arn: str | None  # None: no entry for the deployer (off, or already in adminArns)
    production: bool


class EksCluster(AwsComponent):
    """IAM role, KMS key, log group, aws.eks.Cluster, access entries, OIDC provider, addons, k8s Provider."""

    TYPE = "adaptive-dask:aws:EksCluster"

    # Set by the sections of __init__ (in this order); the next layers and the tests read them.
    version: str
    role: aws.iam.Role
    kms_key: aws.kms.Key
    log_group: aws.cloudwatch.LogGroup | None
    cluster: aws.eks.Cluster
    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    oidc_provider: aws.iam.OpenIdConnectProvider
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    admin_associations: list[aws.eks.AccessPolicyAssociation]
    preview_entries: list[aws.eks.AccessEntry]
    vpc_cni_role: aws.iam.Role
    addons: dict[str, aws.eks.Addon]
    pre_node_addons: list[pulumi.Resource]
    kubeconfig: pulumi.Output[str]
    k8s_provider: k8s.Provider

    def __init__(
        self,
        name: str,
        args: EksClusterArgs,
        provider: aws.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(name, provider, opts)
        self._name = name
        self._args = args
        self.version = args.config.version
        partition = pulumi.Output.from_input(args.partition)

        attachments = self._control_plane_role(partition)
        kms_policy = self._encryption()
        before_cluster: list[pulumi.Resource] = [*attachments, kms_policy]
        self.log_group = self._control_plane_logs()
        if self.log_group is not None:
            before_cluster.append(self.log_group)
        self.cluster = self._control_plane(before_cluster)
        self.cluster_name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        issuer_url = self._irsa()
        self._access_entries(partition)
        cni_attachments = self._vpc_cni_role(issuer_url, partition)
        self._pre_node_addons(cni_attachments)
        self._kubeconfig_and_provider()
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "endpoint": self.endpoint,
                "oidcProviderArn": self.oidc_provider_arn,
                "oidcIssuer": self.oidc_issuer,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _control_plane_role(self, partition: pulumi.Output[str]) -> list[aws.iam.RolePolicyAttachment]:
        """The IAM role EKS assumes to run the control plane; returns its managed-policy attachments."""
        self.role = aws.iam.Role(
            f"{self._name}-cluster", assume_role_policy=iam.cluster_trust_policy(), opts=self._opts()
        )
        return self._attach_managed(f"{self._name}-cluster", self.role, iam.CLUSTER_POLICIES, partition)

    def _encryption(self) -> aws.iam.RolePolicy:
        """The rotating customer key that envelope-encrypts Secrets, and the control plane's right to use it
        (returned: the cluster waits for it)."""
        args = self._args
        self.kms_key = aws.kms.Key(
            f"{self._name}-secrets",
            description=f"EKS secrets envelope encryption for {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=self._opts(protect=args.production),
        )
        aws.kms.Alias(
            f"{self._name}-secrets",
            name=f"alias/{args.cluster_name}-eks-secrets",
            target_key_id=self.kms_key.key_id,
            opts=self._opts(),
        )
        return aws.iam.RolePolicy(
            f"{self._name}-cluster-kms",
            role=self.role.id,
            policy=self.kms_key.arn.apply(iam.secrets_encryption_policy),
            opts=self._opts(),
        )

    def _control_plane_logs(self) -> aws.cloudwatch.LogGroup | None:
        """The log group EKS writes to, made first so it has a retention (None: no log types enabled)."""
        cfg = self._args.config
        if not cfg.log_types:
            return None
        return aws.cloudwatch.LogGroup(
            f"{self._name}-control-plane",
            name=log_group_name(self._args.cluster_name),
            retention_in_days=cfg.log_retention_days,
            opts=self._opts(),
        )

    def _control_plane(self, before_cluster: Sequence[pulumi.Resource]) -> aws.eks.Cluster:
        """The EKS cluster itself, created after its role, key policy and log group (`before_cluster`)."""
        args = self._args
        cfg = args.config
        vpc_config: dict[str, Any] = {
            "subnet_ids": args.subnet_ids,
            "endpoint_private_access": cfg.endpoint_private_access,
            "endpoint_public_access": cfg.endpoint_public_access,
        }
        if cfg.endpoint_public_access:
            vpc_config["public_access_cidrs"] = list(cfg.public_access_cidrs)
        return aws.eks.Cluster(
            f"{self._name}-eks",
            name=args.cluster_name,
            version=cfg.version,
            role_arn=self.role.arn,
            vpc_config=vpc_config,
            access_config={
                "authentication_mode": "API",
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            bootstrap_self_managed_addons=False,
            encryption_config={"provider": {"key_arn": self.kms_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=list(cfg.log_types),
            kubernetes_network_config={"ip_family": "ipv4", "service_ipv4_cidr": cfg.service_cidr},
            upgrade_policy={"support_type": cfg.support_type},
            deletion_protection=args.production,
            tags=name_tag(args.cluster_name),
            # production: Pulumi refuses to plan its delete, so a destroy stops before deleting anything
            # (AWS's deletion protection alone stops it only here, after the Dask layer and nodes are gone)
            opts=self._opts(depends_on=list(before_cluster), protect=args.production),
        )

    def _irsa(self) -> pulumi.Output[str]:
        """The cluster's OIDC provider in IAM, which IRSA roles trust; returns the issuer URL."""
        issuer_url = self.cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{self._name}-oidc", url=issuer_url, client_id_lists=["sts.amazonaws.com"], opts=self._opts()
        )
        self.oidc_provider_arn = self.oidc_provider.arn
        self.oidc_issuer = issuer_url.apply(lambda u: u.removeprefix("https://"))
        return issuer_url

    def _access_entries(self, partition: pulumi.Output[str]) -> None:
        """Who may authenticate to the cluster: the admins (cluster-admin) and CI's preview roles."""
        args = self._args
        self.admin_associations = []
        if args.deployer_arn is not None:
            self._cluster_admin(f"{self._name}-deployer", args.deployer_arn, partition)
        for arn in args.config.admin_arns:
            self._cluster_admin(f"{self._name}-admin-{principal_key(arn)}", arn, partition)
        # CI's preview roles: authenticated, in PREVIEW_GROUP, no access policy and no RBAC. Without an
        # entry the Kubernetes half of a preview fails 401; with one it gets discovery and the OpenAPI
        # schema, and its server-side dry-runs are refused 403, on which pulumi-kubernetes previews
        # client-side (provider.go: Create/Update with preview and IsForbidden). Dry-run rights would be
        # write rights in RBAC, and a dry-run patch of a Secret answers with its data.
        self.preview_entries = [
            aws.eks.AccessEntry(
                f"{self._name}-preview-{principal_key(arn)}",
                cluster_name=self.cluster.name,
                principal_arn=arn,
                type="STANDARD",
                kubernetes_groups=[PREVIEW_GROUP],
                opts=self._opts(),
            )
            for arn in args.config.preview_arns
        ]

    def _vpc_cni_role(
        self, issuer_url: pulumi.Output[str], partition: pulumi.Output[str]
    ) -> list[aws.iam.RolePolicyAttachment]:
        """vpc-cni's own IRSA role, so the node role needs no network-management rights; returns its
        managed-policy attachments (the addon waits for them)."""
        self.vpc_cni_role = aws.iam.Role(
            f"{self._name}-vpc-cni",
            assume_role_policy=pulumi.Output.all(self.oidc_provider_arn, issuer_url).apply(
                lambda v: json.dumps(
                    iam.irsa_trust_policy(v[0], v[1], iam.VPC_CNI_NAMESPACE, iam.VPC_CNI_SERVICE_ACCOUNT)
                )
            ),
            description="vpc-cni (IRSA, kube-system/aws-node only)",
            opts=self._opts(),
        )
        return self._attach_managed(
            f"{self._name}-vpc-cni", self.vpc_cni_role, iam.VPC_CNI_POLICIES, partition
        )

    def _pre_node_addons(self, cni_attachments: Sequence[pulumi.Resource]) -> None:
        """The addons nodes need before they can become Ready (a CNI, kube-proxy)."""
        self.addons = {
            "vpc-cni": self._addon(
                "vpc-cni",
                depends_on=cni_attachments,
                service_account_role_arn=self.vpc_cni_role.arn,
                configuration_values=vpc_cni_configuration(),
            ),
            "kube-proxy": self._addon("kube-proxy"),
        }
        self.pre_node_addons = [self.addons[a] for a in PRE_NODE_ADDONS]

    def _kubeconfig_and_provider(self) -> None:
        """The (secret) kubeconfig and the Kubernetes provider the next layers create their objects with."""
        region = self._args.region
        # Output.all would turn the typed certificate_authority back into a plain dict: lift .data first.
        ca_data = self.cluster.certificate_authority.apply(lambda ca: ca.data)
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.cluster.name, self.cluster.endpoint, ca_data).apply(
                lambda a: json.dumps(kubeconfig(a[0], a[1], a[2], region))
            )
        )
        self.k8s_provider = k8s.Provider(
            f"{self._name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            # Nothing in-cluster is applied before somebody may actually authenticate.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.cluster, *self.admin_associations]),
        )

    def _cluster_admin(
        self, logical: str, principal_arn: pulumi.Input[str], partition: pulumi.Output[str]
    ) -> None:
        entry = aws.eks.AccessEntry(
            logical,
            cluster_name=self.cluster.name,
            principal_arn=principal_arn,
            type="STANDARD",
            opts=self._opts(),
        )
        self.admin_associations.append(
            aws.eks.AccessPolicyAssociation(
                logical,
                cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=partition.apply(iam.access_policy_arn),
                access_scope={"type": "cluster"},
                opts=self._opts(depends_on=[entry]),
            )
        )

    def _addon(
        self,
        addon: str,
        depends_on: Sequence[pulumi.Resource] = (),
        service_account_role_arn: pulumi.Input[str] | None = None,
        configuration_values: str | None = None,
        pod_identity_associations: Sequence[aws.eks.AddonPodIdentityAssociationArgs] = (),
    ) -> aws.eks.Addon:
        pinned = self._args.config.addon_versions.get(addon)
        version: pulumi.Input[str] = (
            pinned
            or aws.eks.get_addon_version_output(
                addon_name=addon,
                kubernetes_version=self.version,
                most_recent=True,
                opts=self._invoke(),
            ).version
        )
        return aws.eks.Addon(
            f"{self._name}-{addon}",
            cluster_name=self.cluster.name,
            addon_name=addon,
            addon_version=version,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            service_account_role_arn=service_account_role_arn,
            configuration_values=configuration_values,
            pod_identity_associations=list(pod_identity_associations) or None,
            opts=self._opts(depends_on=list(depends_on)),
        )

    def add_node_dependent_addons(
        self, nodes: Sequence[pulumi.Resource], optional: Sequence[str] = ()
    ) -> list[aws.eks.Addon]:
        """Create the addons whose pods need nodes (coredns, and the `optional` ones the stack asks for,
        e.g. the Pod Identity agent) once `nodes` exist."""
        names = (*POST_NODE_ADDONS, *optional)
        created = [self._addon(a, depends_on=nodes) for a in names]
        for addon_name, addon in zip(names, created, strict=True):
            self.addons[addon_name] = addon
        return created

    def add_addon(
        self,
        addon: str,
        depends_on: Sequence[pulumi.Resource],
        configuration_values: str | None = None,
        pod_identity_associations: Sequence[aws.eks.AddonPodIdentityAssociationArgs] = (),
    ) -> aws.eks.Addon:
        """An addon the stack asks for with settings of its own (e.g. its Pod Identity role), once
        `depends_on` (the nodes, the role's policies) exist; pinned like the others."""
        created = self._addon(
            addon,
            depends_on=depends_on,
            configuration_values=configuration_values,
            pod_identity_associations=pod_identity_associations,
        )
        self.addons[addon] = created
        return created
