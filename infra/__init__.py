"""The adaptive-dask Pulumi program: config/ -> aws/ -> k8s/ components, composed by program.py."""
