"""The adaptive-dask Pulumi program: one ComponentResource per layer, composed in __main__.py."""
