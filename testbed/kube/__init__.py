"""The real Kubernetes 1.20 control plane and the kubelet harness that runs pods as local processes."""
