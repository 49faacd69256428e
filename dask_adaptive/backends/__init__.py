"""Mechanisms that start and stop workers; the controller drives them through `Backend`."""
