"""The Kubernetes layer: cluster-autoscaler and the Dask cluster, and the pure builders of their objects."""
