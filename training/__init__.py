"""Offline side of streamd: train, calibrate and export a forecaster (needs the ``train`` extra).

May import from ``streamd`` (card schema, scaling, CSV reading); ``streamd`` never imports
this package except lazily from the ``train`` subcommand.
"""
