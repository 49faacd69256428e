"""`DaskCluster`: the Dask scheduler (with the adaptive preload) and the worker Deployment it scales.

Takes plain typed inputs (validated `DaskSettings` and an explicit Kubernetes provider) so it runs
the same against EKS and against any cluster of the `local` target.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls

from infra.config.settings import DaskSettings
from infra.k8s import admission, guards, headroom, jupyter, monitoring, network_policies, rbac, services, tls
from infra.k8s import dask_objects as k8s_dask
from infra.k8s import preload as k8s_preload
from infra.k8s.objects import create, patch

# The preload owns the worker count (`/scale`); Pulumi creates the Deployment at 0 and never resets it.
WORKER_IGNORE_CHANGES = ["spec.replicas"]
# The notebook's init container fills its token Secret; Pulumi creates it empty and never touches its data.
TOKEN_IGNORE_CHANGES = ["data", "stringData"]


class DaskCluster(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    scheduler_address: pulumi.Output[str]
    dashboard: pulumi.Output[str]
    worker_deployment: pulumi.Output[str]
    worker_selector: pulumi.Output[str]
    client_setup: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: DaskSettings,
        k8s_provider: k8s.Provider,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
        notebook_depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        """`depends_on`: what must exist before any pod is created (e.g. the node groups);
        `notebook_depends_on`: what the notebook's home volume needs (aws: the EBS CSI driver and the
        StorageClass)."""
        super().__init__("adaptive-dask:kubernetes:DaskCluster", name, None, opts)
        self._k8s_provider = k8s_provider
        names = k8s_dask.Names.of(settings)
        version = settings.dask_version
        files = k8s_preload.collect()
        preload_hash = k8s_preload.content_hash(files)

        ns = self._namespace(name, settings, names, depends_on)
        fences = self._fences(name, settings, names, ns)
        scheduler_fences = self._scheduler_fences(name, settings, names, depends_on)
        worker_sa, binding = self._rbac(name, settings, names, ns)
        preload = create(
            f"{name}-preload", k8s_dask.preload_configmap(names, version, files), self._after(ns)
        )
        # Mutual TLS: the certificates exist (in Secrets) before any Dask pod, which mounts them.
        rollout, tls_ready, client_setup = self._mutual_tls(name, settings, names, self._after(ns))
        workers = create(
            f"{name}-workers",
            k8s_dask.worker_deployment(settings, names, files, preload_hash, rollout),
            self._after(preload, worker_sa, *fences, *tls_ready, ignore_changes=WORKER_IGNORE_CHANGES),
        )
        # Every target: a node drain waits for the scheduler instead of evicting it, from its first pod on.
        budget = create(
            f"{name}-scheduler-pdb", k8s_dask.scheduler_disruption_budget(settings, names), self._after(ns)
        )
        # The preload exits at start if the worker Deployment or its RBAC is missing: create them first.
        scheduler = create(
            f"{name}-scheduler",
            k8s_dask.scheduler_deployment(settings, names, files, preload_hash, rollout),
            self._after(preload, binding, workers, budget, *scheduler_fences, *tls_ready),
        )
        service = create(f"{name}-scheduler-svc", services.scheduler_service(names, version), self._after(ns))
        self._headroom(name, settings, names, depends_on, [worker_sa, workers, *fences])
        # dask.monitoring, off by default: the PodMonitor and the Grafana dashboard
        monitoring.create_monitoring(name, settings, names, self._after(ns))
        dashboard = self._dashboard(name, settings, names, scheduler)
        self.jupyter_setup = self._notebook(
            name, settings, names, ns, [*fences, *tls_ready, *notebook_depends_on]
        )

        self.namespace = ns.metadata.name  # type: ignore[attr-defined]
        self.scheduler_address = service.metadata.apply(lambda _: names.scheduler_address)  # type: ignore[attr-defined]
        self.dashboard = pulumi.Output.from_input(dashboard)
        self.client_setup = pulumi.Output.from_input(client_setup)
        self.worker_deployment = workers.metadata.apply(lambda _: names.worker)  # type: ignore[attr-defined]
        self.worker_selector = pulumi.Output.from_input(
            k8s_dask.selector_string(k8s_dask.selector_labels(names, "worker"))
        )
        self.scheduler = scheduler
        self.workers = workers
        self.register_outputs(
            {
                "namespace": self.namespace,
                "schedulerAddress": self.scheduler_address,
                "dashboard": self.dashboard,
                "workerDeployment": self.worker_deployment,
                "workerSelector": self.worker_selector,
                "clientSetup": self.client_setup,
            }
        )

    def _after(self, *after: pulumi.Resource, **extra: object) -> pulumi.ResourceOptions:
        """Options for a child object: parented here, through the explicit provider, after `after`."""
        return pulumi.ResourceOptions(
            parent=self, provider=self._k8s_provider, depends_on=list(after), **extra
        )

    def _namespace(
        self, name: str, settings: DaskSettings, names: k8s_dask.Names, depends_on: Sequence[pulumi.Resource]
    ) -> pulumi.Resource:
        """The namespace (its Pod Security labels enforce `restricted` on every pod in it) and its default
        ServiceAccount locked down. Every other object waits for the namespace, so waiting for
        `depends_on` here holds back the whole layer."""
        ns = create(
            f"{name}-namespace",
            guards.namespace(settings, names, settings.kubernetes_version),
            self._after(*depends_on),
        )
        patch(f"{name}-default-sa", guards.default_service_account(settings, names), self._after(ns))
        return ns

    def _fences(
        self, name: str, settings: DaskSettings, names: k8s_dask.Names, ns: pulumi.Resource
    ) -> list[pulumi.Resource]:
        """NetworkPolicies and the quota, which exist before any pod does: no pod of the stack ever runs
        unfenced or over budget."""
        fences = [
            create(f"{name}-{policy['metadata']['name']}", policy, self._after(ns))
            for policy in network_policies.network_policies(
                settings, names, settings.client_namespace_selectors, settings.client_pod_selectors
            )
        ]
        fences.append(create(f"{name}-quota", guards.resource_quota(settings, names), self._after(ns)))
        return fences

    def _scheduler_fences(
        self, name: str, settings: DaskSettings, names: k8s_dask.Names, depends_on: Sequence[pulumi.Resource]
    ) -> list[pulumi.Resource]:
        """The scheduler's PriorityClass and the admission policies that limit what it (and its scaling
        token) may do, all of which the scheduler waits for."""
        # The scheduler's PriorityClass is usable cluster-wide the moment it exists: its policy comes first.
        priority_fences: list[pulumi.Resource] = []
        if settings.admission_policy:
            priority_policy = create(
                f"{name}-priority-admission",
                admission.priority_class_policy(settings, names),
                self._after(*depends_on),
            )
            priority_fences.append(
                create(
                    f"{name}-priority-admission-binding",
                    admission.priority_class_policy_binding(settings, names),
                    self._after(priority_policy),
                )
            )
        priority = create(
            f"{name}-scheduler-priority",
            guards.scheduler_priority_class(settings, names),
            self._after(*depends_on, *priority_fences),
        )
        scheduler_fences: list[pulumi.Resource] = [priority]
        if settings.admission_policy:
            policy = create(
                f"{name}-admission", admission.admission_policy(settings, names), self._after(*depends_on)
            )
            scheduler_fences.append(
                create(
                    f"{name}-admission-binding",
                    admission.admission_policy_binding(settings, names),
                    self._after(policy),
                )
            )
        return scheduler_fences

    def _rbac(
        self, name: str, settings: DaskSettings, names: k8s_dask.Names, ns: pulumi.Resource
    ) -> tuple[pulumi.Resource, pulumi.Resource]:
        """The pods' ServiceAccounts and the scheduler's Role (scaling the workers) with its binding;
        returns (the workers' ServiceAccount, the scheduler's RoleBinding), which the pods wait for."""
        version = settings.dask_version
        scheduler_sa = create(
            f"{name}-scheduler-sa",
            # no automounted token: the scheduler pod projects its own short-lived one
            rbac.service_account(names.scheduler, names, "scheduler", version, automount=False),
            self._after(ns),
        )
        worker_sa = create(
            f"{name}-worker-sa",
            # the workers' data identity on other clusters (IRSA, workload identity); on EKS the Pod
            # Identity association (infra/aws/data_access.py) names this account instead
            rbac.service_account(
                names.worker,
                names,
                "worker",
                version,
                automount=False,
                annotations=settings.data_access.service_account_annotations,
            ),
            self._after(ns),
        )
        role = create(f"{name}-role", rbac.role(names, version), self._after(ns))
        binding = create(
            f"{name}-rolebinding", rbac.role_binding(names, version), self._after(role, scheduler_sa)
        )
        return worker_sa, binding

    def _headroom(
        self,
        name: str,
        settings: DaskSettings,
        names: k8s_dask.Names,
        depends_on: Sequence[pulumi.Resource],
        after_workers: Sequence[pulumi.Resource],
    ) -> None:
        """Warm headroom (`dask.headroomWorkers`): placeholder pods holding room for workers, which preempt
        them. After the workers' ServiceAccount, Deployment and the fences (`after_workers`: the quota
        reserves the placeholders' share)."""
        if not settings.headroom_workers:
            return
        placeholders = create(
            f"{name}-headroom-priority", headroom.priority_class(settings, names), self._after(*depends_on)
        )
        create(
            f"{name}-headroom",
            headroom.placeholder_deployment(settings, names),
            self._after(placeholders, *after_workers),
        )

    def _dashboard(
        self, name: str, settings: DaskSettings, names: k8s_dask.Names, scheduler: pulumi.Resource
    ) -> pulumi.Input[str]:
        """How to reach the dashboard: a LoadBalancer limited to `dashboard_cidrs` when any are given,
        else port-forward instructions."""
        if not settings.dashboard_cidrs:
            return services.port_forward_instructions(names)
        lb = create(
            f"{name}-dashboard",
            services.dashboard_service(
                names, settings.dask_version, settings.dashboard_cidrs, settings.target, settings.aws_tags
            ),
            self._after(scheduler),
        )
        return lb.status.apply(  # type: ignore[attr-defined]
            lambda status: _lb_instructions(status, settings.dashboard_cidrs)
        )

    def _notebook(
        self,
        name: str,
        settings: DaskSettings,
        names: k8s_dask.Names,
        ns: pulumi.Resource,
        before_pod: Sequence[pulumi.Resource],
    ) -> pulumi.Output[str] | None:
        """The in-cluster notebook (`dask.jupyter`), when enabled: its objects in order, the pod last
        (after the fences, the client certificate and, `before_pod`, its StorageClass)."""
        made: list[pulumi.Resource] = []
        for manifest in jupyter.objects(settings, names):
            kind = manifest["kind"]
            extra: dict = {"ignore_changes": TOKEN_IGNORE_CHANGES} if kind == "Secret" else {}
            after = [ns, *made] if kind in ("RoleBinding", "Deployment") else [ns]
            if kind in ("PersistentVolumeClaim", "Deployment"):
                after += before_pod
            made.append(
                create(
                    f"{name}-{kind.lower()}-{manifest['metadata']['name']}",
                    manifest,
                    self._after(*after, **extra),
                )
            )
        if not made:
            return None
        return pulumi.Output.from_input(jupyter.setup_instructions(names))

    def _mutual_tls(
        self, name: str, settings: DaskSettings, names: k8s_dask.Names, after_ns: pulumi.ResourceOptions
    ) -> tuple[pulumi.Input[str], list[pulumi.Resource], pulumi.Input[str]]:
        """The stack's CA, certificates, Secrets and client Role: (the pods' rollout value, the Secrets the
        pods wait for, the client instructions). Nothing when the stack runs plaintext."""
        if not settings.tls:
            return "", [], "plaintext Dask (dask.tls=false): Client('tcp://localhost:8786')"
        version = settings.dask_version
        # An explicit provider like every other (it only computes: keys and certificates in state).
        tls_provider = pulumi_tls.Provider(f"{name}-tls", opts=pulumi.ResourceOptions(parent=self))
        # After the namespace (so after the cluster): a certificate's validity counts from the deploy that
        # first uses it, not from a first `up` that failed or stopped before the cluster was up.
        material = tls.make_material(
            name,
            names,
            pulumi.ResourceOptions(parent=self, provider=tls_provider, depends_on=after_ns.depends_on),
        )
        secrets = [
            create(f"{name}-{secret['metadata']['name']}", secret, after_ns)
            for secret in tls.secrets(material, names, version)
        ]
        notebook_secrets = (jupyter.TOKEN_SECRET,) if settings.jupyter.enabled else ()
        client_role = create(
            f"{name}-client-role", tls.client_role(names, version, notebook_secrets), after_ns
        )
        if settings.client_groups:
            create(
                f"{name}-client-rolebinding",
                tls.client_role_binding(names, version, settings.client_groups),
                pulumi.ResourceOptions.merge(after_ns, pulumi.ResourceOptions(depends_on=[client_role])),
            )
        return material.rollout, secrets, tls.client_instructions(names)


def _lb_instructions(status: object, cidrs: tuple[str, ...]) -> str:
    ingress = []
    lb = getattr(status, "load_balancer", None) if status is not None else None
    if lb is not None and getattr(lb, "ingress", None):
        ingress = [i.hostname or i.ip for i in lb.ingress]
    where = ingress[0] if ingress else "<pending load balancer>"
    return f"http://{where}:{k8s_dask.DASHBOARD_PORT}/status (reachable from {', '.join(cidrs)} only)"
