"""The deployment files: systemd unit, Prometheus rules, Grafana dashboard, install script."""
