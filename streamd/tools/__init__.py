"""Offline tools: replay, evaluate (NAB scores, baselines), inspect, simulate, the demo, and the
broker and daemon harness that the demo, tests and benchmarks share. They score through the
core; none of them imports the runtime."""
