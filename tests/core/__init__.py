"""The pure core alone: parsing, state, scaling, scoring, the pipeline with real ONNX files."""
