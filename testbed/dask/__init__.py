"""The Dask end-to-end driver on the control plane, and real-process helpers (scheduler, workers)."""
