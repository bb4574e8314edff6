"""The pure core: parsing, per-stream state, scaling, inference, scoring and alerts.

No network, no clock, no threads: times come in the samples, and everything here can be
tested alone. The daemon (:mod:`streamd.runtime`) and the offline tools
(:mod:`streamd.tools`) both score through :class:`streamd.core.pipeline.Pipeline`.
"""
