"""The daemon's I/O parts one by one: snapshots, metrics, the receiver pipe and client."""
