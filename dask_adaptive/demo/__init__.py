"""`python -m dask_adaptive demo`: the seed's demo on one machine with the local backend.

Not imported by the preloads; the only part of dask_adaptive that uses rich and matplotlib.
"""
