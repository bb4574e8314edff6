"""The daemon's I/O around the core: MQTT, the worker thread, metrics, HTTP, systemd, snapshots.

Everything here exists for ``streamd run``; the offline tools never import it.
"""
