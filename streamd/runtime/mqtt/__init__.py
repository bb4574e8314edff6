"""The MQTT edge: the receiver (a process or a thread), its client, its pipe to the daemon
and the daemon's proxy of it; what crosses the pipe is typed (:mod:`.messages`)."""
