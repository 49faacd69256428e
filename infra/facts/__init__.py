"""Pure fact tables that both the config and the layers use: instance types, Kubernetes quantities,
versions, the placement vocabulary (labels and taints) and worker sizing. Nothing here imports config,
a layer, or Pulumi."""
