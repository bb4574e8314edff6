"""``streamd inspect``: show a model file's card and run its self-test (ONNX Runtime only)."""

from __future__ import annotations

import json

from streamd.core.inference import Forecaster


def describe(path: str) -> str:
    """Human-readable description of ``path``; loading it runs the self-test or raises."""
    fc = Forecaster(path)
    card = fc.card
    diff = fc.self_test()
    ins = ", ".join(f"{i.name} {i.type} {i.shape}" for i in fc.session.get_inputs())
    outs = ", ".join(f"{o.name} {o.type} {o.shape}" for o in fc.session.get_outputs())
    cal = card.calibration
    keys = ("files", "data_rows", "train_span", "validation_loss", "epochs_run", "parameters")
    trained = json.dumps({k: card.training.get(k) for k in keys})
    lines = [
        f"model     {card.name}  version {card.version}  ({path})",
        f"network   {card.cell.upper()} {card.layers} x {card.hidden_size}, window {card.window}",
        f"features  {', '.join(card.features)}",
        f"time      {', '.join(card.time_features) or 'none'} (card format {card.format_version})",
        (
            "scaling   per stream: each stream's running mean and standard deviation"
            if card.per_stream_scaling
            else f"scaling   {card.scaler.kind}: offset {card.scaler.offset.tolist()} "
            f"scale {card.scaler.scale.tolist()}"
        ),
        f"calibration  n={cal.n} mean={cal.mean:.5g} std={cal.std:.5g} "
        f"threshold={cal.threshold:.5g} quantiles={json.dumps(cal.quantiles)}",
        f"inputs    {ins}",
        f"outputs   {outs}",
        f"training  {trained}",
        f"created   {card.created_at}",
        f"self-test passed: max abs difference {diff:.3g} (tolerance {card.self_test.tolerance:g})",
    ]
    return "\n".join(lines)


def card_json(path: str) -> str:
    """The card exactly as the file stores it, indented."""
    return json.dumps(json.loads(Forecaster(path).card.to_json()), indent=2, sort_keys=True)
