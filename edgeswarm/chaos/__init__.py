"""Chaos harness: real gateways and edges under injected faults (``scripts/chaos``).

A tool for proving the delivery, isolation and replay promises, not a part of any
process: nothing else in edgeswarm imports it (tests/test_chaos.py checks that).
"""
