"""The whole daemon as a process, over a real Mosquitto: what users and systemd see."""
