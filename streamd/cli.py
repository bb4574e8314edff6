"""The ``streamd`` command line: one entry point, one subcommand per job.

Handlers import their modules lazily, so ``streamd inspect`` never loads torch and
``streamd train`` can say clearly that the ``train`` extra is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from streamd import __version__
from streamd.errors import StreamdError
from streamd.timefeatures import PERIODS_S

TRAIN_EXTRA_HINT = (
    "streamd train needs the 'train' extra: "
    "pip install torch==2.13.0 && pip install 'streamd[train]'"
)


def _cmd_train(ns: argparse.Namespace) -> int:
    try:
        from training.loop import LoopConfig
        from training.run import TrainOptions, train
    except ImportError as e:
        if e.name and e.name.split(".")[0] in {"torch", "onnx", "onnxscript", "matplotlib", "tqdm"}:
            print(f"streamd: {TRAIN_EXTRA_HINT} (missing module {e.name!r})", file=sys.stderr)
            return 3
        raise
    opts = TrainOptions(
        data=ns.data,
        out=Path(ns.out),
        report_dir=Path(ns.report),
        features=ns.features,
        window=ns.window,
        hidden_size=ns.hidden,
        layers=ns.layers,
        dropout=ns.dropout,
        cell=ns.cell,
        scaling=ns.scaling,
        per_stream_scaling=ns.per_stream_scaling,
        time_features=ns.time_features or [],
        head_fraction=ns.head_fraction,
        validation_fraction=ns.validation_fraction,
        calibration_fraction=ns.calibration_fraction,
        loop=LoopConfig(
            epochs=ns.epochs,
            batch_size=ns.batch_size,
            learning_rate=ns.lr,
            patience=ns.patience,
            seed=ns.seed,
            progress=not ns.quiet,
        ),
        name=ns.name,
    )
    result = train(opts)
    s = result.summary
    print(
        f"trained {s['name']} version {s['version']}: {s['parameters']} parameters, "
        f"{s['epochs_run']} epochs (best {s['best_epoch']}), validation loss "
        f"{s['validation_loss']:.4g}, {s['train_seconds']:.1f} s training"
    )
    print(
        f"parity: torch vs ONNX Runtime {result.parity.torch_vs_ort:.2e}, window vs stepwise "
        f"{result.parity.window_vs_stepwise:.2e} over {result.parity.windows_checked} windows"
    )
    print(f"calibration threshold {result.card.calibration.threshold:.4g}")
    print(f"wrote {ns.out} and {Path(ns.report) / 'index.html'}")
    return 0


def _cmd_inspect(ns: argparse.Namespace) -> int:
    from streamd.model_info import card_json, describe

    print(card_json(ns.model) if ns.json else describe(ns.model))
    return 0


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


def _cmd_run(ns: argparse.Namespace) -> int:
    from streamd.config import load_settings
    from streamd.logs import setup_logging

    settings = load_settings(Path(ns.config) if ns.config else None, _run_overrides(ns))
    setup_logging(settings.logging.level, settings.logging.format)
    if ns.check_config:
        from streamd.inference import Forecaster

        fc = Forecaster(settings.model.path)
        settings.mqtt.read_password()
        print(
            f"configuration ok; model {fc.card.name} version {fc.card.version} passes its self-test"
        )
        return 0
    from streamd.daemon import Daemon

    return Daemon(settings).run()


def _cmd_config(ns: argparse.Namespace) -> int:
    from streamd.config import defaults_as_toml

    print(defaults_as_toml())
    return 0


def _cmd_replay(ns: argparse.Namespace) -> int:
    from streamd.config import load_settings
    from streamd.replay import replay_csv, write_replay

    settings = load_settings(Path(ns.config) if ns.config else None, _replay_overrides(ns))
    r = replay_csv(settings, Path(ns.model), Path(ns.input))
    from streamd.inference import Forecaster

    features = Forecaster(ns.model).card.features
    write_replay(Path(ns.output), r, features)
    n_alerts = int(r.scores.entered.sum())
    print(f"replayed {len(r.timestamps)} rows: {n_alerts} anomalies entered; wrote {ns.output}")
    return 0


def _replay_overrides(ns: argparse.Namespace) -> dict[str, dict[str, object]]:
    return {"inference": {"mode": ns.mode}} if ns.mode else {}


def _cmd_simulate(ns: argparse.Namespace) -> int:
    from streamd.simulate import Scenario, publish

    scenario = Scenario(
        streams=ns.streams,
        samples=ns.samples,
        step_s=ns.step_s,
        kinds=tuple(ns.kinds),
        anomaly_start=ns.anomaly_start,
        anomaly_length=ns.anomaly_length,
        magnitude=ns.magnitude,
        seed=ns.seed,
        topic_prefix=ns.topic_prefix,
    )
    counts = publish(
        scenario,
        host=ns.host,
        port=ns.port,
        rate=ns.rate,
        qos=ns.qos,
        max_seconds=ns.max_seconds,
        truth_path=Path(ns.truth) if ns.truth else None,
    )
    print(
        f"published {counts['published']} messages on {counts['streams']} streams with "
        f"{counts['anomalies']} injected anomalies in {counts['seconds']} s"
    )
    return 0


def _cmd_evaluate(ns: argparse.Namespace) -> int:
    from streamd.config import load_settings
    from streamd.evaluate import evaluate, table

    if (ns.model is None) == (ns.train_head is None):
        print("streamd evaluate: give exactly one of --model and --train-head", file=sys.stderr)
        return 2
    settings = load_settings(Path(ns.config) if ns.config else None, _replay_overrides(ns))
    summary = evaluate(
        Path(ns.data),
        Path(ns.labels),
        Path(ns.out),
        settings,
        model=Path(ns.model) if ns.model else None,
        train_head=ns.train_head,
        plots=not ns.no_plots,
        jobs=ns.jobs,
        window=ns.window,
        time_features=ns.time_features or [],
    )
    print(table(summary))
    print(
        f"{summary['files']} files in {summary['seconds']} s; wrote {Path(ns.out) / 'summary.json'}"
    )
    return 0


def _add_evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="detection quality on a labelled corpus (NAB scores)")
    p.add_argument("--data", required=True, help="corpus folder (NAB layout)")
    p.add_argument("--labels", required=True, help="labels.json with a 'windows' map")
    p.add_argument("--model", help="one model for every file")
    p.add_argument("--train-head", type=float, help="train a model per file on this first fraction")
    p.add_argument("--out", default="out/evaluate")
    p.add_argument("--config", help="TOML file for the scoring and inference settings")
    p.add_argument("--mode", choices=("step", "window"))
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--jobs", type=int, default=0, help="parallel files (default: one per core)")
    p.add_argument("--window", type=int, default=32, help="window of the per-file models")
    _add_time_features(p, "of the per-file models")
    p.set_defaults(func=_cmd_evaluate)


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.set_defaults(func=_cmd_run)


def _add_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="print the default configuration as TOML")
    p.set_defaults(func=_cmd_config)


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="score a CSV through the daemon's scoring path")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, metavar="CSV")
    p.add_argument("--output", required=True, metavar="CSV")
    p.add_argument("--config", help="TOML file for the scoring and inference settings")
    p.add_argument("--mode", choices=("step", "window"))
    p.set_defaults(func=_cmd_replay)


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from streamd.synth import ANOMALY_KINDS

    p = sub.add_parser("simulate", help="publish synthetic sensor streams with injected anomalies")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--streams", type=int, default=6)
    p.add_argument("--samples", type=int, default=1200, help="samples per stream (bound)")
    p.add_argument("--rate", type=float, default=200.0, help="messages/s in total (0: max)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="wall-time bound")
    p.add_argument("--step-s", type=float, default=300.0, help="simulated seconds between samples")
    p.add_argument("--kinds", nargs="*", default=list(ANOMALY_KINDS), choices=ANOMALY_KINDS)
    p.add_argument("--anomaly-start", type=int, default=500)
    p.add_argument("--anomaly-length", type=int, default=24)
    p.add_argument("--magnitude", type=float, default=3.0, help="in stream standard deviations")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--topic-prefix", default="sensors")
    p.add_argument("--truth", help="write the injected anomalies to this JSON file")
    p.set_defaults(func=_cmd_simulate)


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train, calibrate and export a model (needs the train extra)")
    p.add_argument("--data", nargs="+", required=True, metavar="CSV", help="normal data, CSV files")
    p.add_argument("--out", required=True, metavar="MODEL.onnx")
    p.add_argument("--report", required=True, metavar="DIR", help="folder for plots and summary")
    p.add_argument("--features", nargs="+", help="feature columns (default: all but timestamp)")
    p.add_argument("--window", type=int, default=32, help="input window length T (default 32)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units per layer (default 32)")
    p.add_argument("--layers", type=int, default=2, help="stacked recurrent layers (default 2)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout between layers")
    p.add_argument("--cell", choices=("gru", "lstm"), default="gru")
    p.add_argument("--scaling", choices=("minmax", "standard"), default="minmax")
    p.add_argument(
        "--per-stream-scaling",
        action="store_true",
        help="scale each file by its own statistics; the daemon then scales each stream itself",
    )
    _add_time_features(p, "(default: none)")
    p.add_argument(
        "--head-fraction",
        type=float,
        default=1.0,
        help="train on only the first fraction of each file's rows (e.g. 0.15)",
    )
    p.add_argument("--validation-fraction", type=float, default=0.15)
    p.add_argument("--calibration-fraction", type=float, default=0.15)
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="model name (default: output file stem)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _add_time_features(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--time-features",
        nargs="+",
        choices=sorted(PERIODS_S),
        metavar="PERIOD",
        help=f"also feed the model each sample's phase in these periods: day, week {what}",
    )


def _add_inspect(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="show and verify a model file (card, I/O, self-test)")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=_cmd_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamd", description="Streaming anomaly detection for edge boxes."
    )
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    adders: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
        _add_train,
        _add_run,
        _add_replay,
        _add_evaluate,
        _add_simulate,
        _add_inspect,
        _add_config,
    ]
    for add in adders:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; every :class:`StreamdError` becomes one line on stderr and its exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ns = build_parser().parse_args(argv)
    try:
        rc: int = ns.func(ns)
    except StreamdError as e:
        print(f"streamd {ns.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return rc
