"""The machinery the tests and the benchmarks share (neither imports the other's modules; both import this).

- `testbed.kube`: a real Kubernetes 1.20 control plane (`control_plane`, binaries from tests/kube/build.sh),
  a kubelet harness that runs pods as local processes (`kubelet`, `runner`, `pod_files`, `containers`,
  `probes`, `rewriting`, `services`, `nodes`), the node provisioner standing in for cluster-autoscaler and
  the Auto Scaling Group (`provisioner`), a fault proxy (`faults`), the real admission webhook
  (`admission_webhook`), the program's objects applied to the control plane (`stack_apply`) and the
  pytest plugin with their fixtures (`plugin`, loaded by `-p testbed.kube.plugin` in pyproject.toml).
  What is faithful and what is not: tests/kube/README.md.
- `testbed.dask`: the Dask end-to-end driver on that control plane (`kube_driver`, `kube_fixtures`) and the
  real-process helpers (`procs`: a scheduler with the preload, workers, clients).
- `testbed.pki`: the test PKI (a CA and a certificate per role).
- `testbed.infra`: the Pulumi mocks harness (`harness`: the program run under mocks, its resource graph),
  the builders of settings and templates (`builders`) and the admission evaluator (`admission_review`).
"""
