"""Benchmarks: the service side by side with the direct SDK call and a LiteLLM proxy.

Run: .venv/bin/python -m tests.benchmarks.run [--quick]   (see docs/benchmarks.md)
Not collected by pytest (pyproject norecursedirs).
"""
