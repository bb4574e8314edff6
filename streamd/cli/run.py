"""``streamd run`` (the daemon) and ``streamd config`` (its settings with their defaults)."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamd.cli.common import SubParsers


def _run_overrides(ns: argparse.Namespace) -> dict[str, dict[str, object]]:
    """Flags -> nested settings (flags beat file and environment)."""
    pairs = {
        ("model", "path"): ns.model,
        ("mqtt", "host"): ns.mqtt_host,
        ("mqtt", "port"): ns.mqtt_port,
        ("mqtt", "topics"): ns.topic,
        ("inference", "mode"): ns.mode,
        ("http", "host"): ns.http_host,
        ("http", "port"): ns.http_port,
        ("logging", "level"): ns.log_level,
    }
    out: dict[str, dict[str, object]] = {}
    for (section, key), value in pairs.items():
        if value is not None:
            out.setdefault(section, {})[key] = value
    return out


def cmd_run(ns: argparse.Namespace) -> int:
    from streamd.config import load_settings
    from streamd.runtime.logs import setup_logging

    settings = load_settings(Path(ns.config) if ns.config else None, _run_overrides(ns))
    setup_logging(settings.logging.level, settings.logging.format)
    if ns.check_config:
        from streamd.core.inference import Forecaster
        from streamd.runtime.mqtt.proxy import link_options

        fc = Forecaster(settings.model.resolved_path())
        link_options(settings.mqtt)  # reads the password file, checks the TLS files
        _check_http_host(settings.http.host, settings.http.port, settings.http.enabled)
        print(
            f"configuration ok; model {fc.card.name} version {fc.card.version} "
            f"({settings.model.resolved_path()}) passes its self-test"
        )
        return 0
    from streamd.runtime.daemon import Daemon

    return Daemon(settings).run()


def _check_http_host(host: str, port: int, enabled: bool) -> None:
    """What binding will need: the metrics address must resolve."""
    import socket

    from streamd.errors import ConfigError

    if not enabled:
        return
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError("http.host", f"cannot resolve {host!r}: {e.strerror or e}") from e


def cmd_config(ns: argparse.Namespace) -> int:
    from streamd.config import defaults_as_toml

    print(defaults_as_toml())
    return 0


def add_run(sub: SubParsers) -> None:
    p = sub.add_parser("run", help="run the daemon (MQTT in, alerts and metrics out)")
    p.add_argument("--config", help="TOML file (default /etc/streamd/streamd.toml if present)")
    p.add_argument("--check-config", action="store_true", help="validate config and model, exit")
    p.add_argument("--model", help="model.path")
    p.add_argument("--mqtt-host", help="mqtt.host")
    p.add_argument("--mqtt-port", type=int, help="mqtt.port")
    p.add_argument("--topic", action="append", help="mqtt.topics (repeat for several)")
    p.add_argument("--mode", choices=("step", "window"), help="inference.mode")
    p.add_argument("--http-host", help="http.host")
    p.add_argument("--http-port", type=int, help="http.port")
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=cmd_run)


def add_config(sub: SubParsers) -> None:
    p = sub.add_parser("config", help="print the default configuration as TOML")
    p.set_defaults(func=cmd_config)
