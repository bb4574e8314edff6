"""The offline tools: NAB scoring, replay, evaluate."""
