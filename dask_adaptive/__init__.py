"""Adaptive scaling for Dask, run inside the scheduler as a preload.

The scheduler's own work estimate decides how many workers are wanted; a backend (Kubernetes worker
Deployment, or local worker processes) provides them. Scale-down retires workers through the scheduler
first, so results move before exactly those workers are removed.
"""
