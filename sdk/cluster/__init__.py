"""Running edgekit's jobs on a Ray cluster: conversion jobs on CPU nodes, benchmarks on device slots.

Nothing here imports Ray at module level; `connect` does, and says which extra to install
when it is missing. A local run never reaches this package (tests/test_cli_fast.py checks).
A job is a plain function (edgekit.cluster.jobs) that runs the same locally: the cluster
only decides where it runs.
"""
from __future__ import annotations

from edgekit.cluster.connect import Cluster, connect, parse_address

__all__ = ["Cluster", "connect", "parse_address"]
