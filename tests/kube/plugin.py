"""pytest plugin with the real Kubernetes control plane fixtures (filled in by the control-plane work)."""
