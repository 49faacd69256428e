"""Every resource type the program may register, classified for the cost-tag test (test_cost_tags.py):
does AWS bill for it (or for what it launches), and if so how the stack's cost-allocation tags reach it.

A type missing here fails the test: a new resource is classified (and, if billable, tagged) on purpose.
"""

from __future__ import annotations

# How the tags reach a billable AWS type:
DEFAULT_TAGS = "default_tags"  # the explicit provider's default tags (the type has `tags`/`tags_all`)
LAUNCH_TEMPLATE = "launch_template"  # what an ASG launches: the launch template's tag specifications

# type token -> (how it is tagged, why it is billable)
BILLABLE: dict[str, tuple[str, str]] = {
    "aws:eks/cluster:Cluster": (
        DEFAULT_TAGS,
        "the control plane is billed per hour (more in extended support)",
    ),
    "aws:eks/nodeGroup:NodeGroup": (
        LAUNCH_TEMPLATE,
        "its Auto Scaling group launches the EC2 instances and EBS root volumes: the bulk of the bill; "
        "provider default tags stop at the node group itself",
    ),
    "aws:ec2/natGateway:NatGateway": (DEFAULT_TAGS, "billed per hour and per GB processed"),
    "aws:ec2/eip:Eip": (
        DEFAULT_TAGS,
        "a public IPv4 address is billed per hour (the NAT gateways' addresses)",
    ),
    "aws:ec2/vpcEndpoint:VpcEndpoint": (
        DEFAULT_TAGS,
        "interface endpoints are billed per hour and GB (the S3 gateway one is free, tagged all the same)",
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        DEFAULT_TAGS,
        "log ingestion and storage (control plane, flow logs)",
    ),
    "aws:ec2/flowLog:FlowLog": (DEFAULT_TAGS, "vended-log delivery of VPC flow logs is billed per GB"),
    "aws:kms/key:Key": (DEFAULT_TAGS, "a customer managed key is billed per month and per request"),
    "aws:ecr/repository:Repository": (DEFAULT_TAGS, "image storage is billed per GB-month"),
    "aws:budgets/budget:Budget": (DEFAULT_TAGS, "AWS Budgets may charge per budget-day beyond the free ones"),
}

# type token -> why AWS bills nothing for it (what it makes is billed elsewhere, or nothing is)
NOT_BILLABLE: dict[str, str] = {
    "aws:ec2/vpc:Vpc": "a VPC itself is free; what is in it is classified on its own",
    "aws:ec2/subnet:Subnet": "free",
    "aws:ec2/routeTable:RouteTable": "free",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "free",
    "aws:ec2/internetGateway:InternetGateway": "free (traffic is billed on the instances and NAT gateways)",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "free",
    "aws:ec2/securityGroup:SecurityGroup": "free",
    "aws:ec2/launchTemplate:LaunchTemplate": "free; its tag specifications tag what the node groups launch",
    "aws:autoscaling/tag:Tag": "a tag on an Auto Scaling group (free; the group itself is free)",
    "aws:eks/addon:Addon": "free; its pods run on the tagged nodes (volumes it provisions: see StorageClass)",
    "aws:eks/accessEntry:AccessEntry": "free",
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": "free",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": "free",
    "aws:iam/role:Role": "free",
    "aws:iam/rolePolicy:RolePolicy": "free",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "free",
    "aws:iam/policy:Policy": "free",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": "free",
    "aws:kms/alias:Alias": "free (the key is billed)",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "free; it keeps the repository's storage bounded",
}

# Packages whose resources never make AWS create anything.
NOT_AWS = ("tls:", "random:", "pulumi:providers:")

# Kubernetes kinds (type token) that make AWS create something, and are checked by the test:
# - a Service of type LoadBalancer: an NLB (tags from the additional-resource-tags annotation);
# - a StorageClass of the EBS CSI driver: volumes (tags from `tagSpecification_<N>` parameters, or the
#   driver addon's `controller.extraVolumeTags`);
# - a PersistentVolumeClaim / a StatefulSet's volumeClaimTemplates: a volume from the class they name.
K8S_SERVICE = "kubernetes:core/v1:Service"
K8S_STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
K8S_CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"
K8S_STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
K8S_HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# Helm charts the program installs, and what each makes AWS create (nothing, for these).
HELM_CHARTS_WITHOUT_AWS_RESOURCES = {
    "cluster-autoscaler": "resizes the node groups' ASGs (their launches are tagged); creates nothing itself",
}

# Kubernetes kinds that make AWS create nothing (pods run on the tagged nodes).
K8S_NOT_BILLABLE: dict[str, str] = {
    f"kubernetes:{kind}": "Kubernetes object only"
    for kind in (
        "core/v1:Namespace",
        "core/v1:ConfigMap",
        "core/v1:Secret",
        "core/v1:ServiceAccount",
        "core/v1:ServiceAccountPatch",
        "core/v1:ResourceQuota",
        "core/v1:LimitRange",
        "apps/v1:Deployment",
        "apps/v1:DaemonSet",
        "batch/v1:Job",
        "batch/v1:CronJob",
        "policy/v1:PodDisruptionBudget",
        "networking.k8s.io/v1:NetworkPolicy",
        "rbac.authorization.k8s.io/v1:Role",
        "rbac.authorization.k8s.io/v1:RoleBinding",
        "rbac.authorization.k8s.io/v1:ClusterRole",
        "rbac.authorization.k8s.io/v1:ClusterRoleBinding",
        "scheduling.k8s.io/v1:PriorityClass",
        "admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy",
        "admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration",
        "monitoring.coreos.com/v1:PodMonitor",
        "monitoring.coreos.com/v1:ServiceMonitor",
    )
}
