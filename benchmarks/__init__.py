"""Benchmark suite for docker-ovs-plugin: `python -m benchmarks --help` (see README, Performance).

Benchmarks, not timed tests: every item measures both sides of a comparison in the same run,
alternating them, and reports medians, spread and ratios against the targets of the issue.
"""
