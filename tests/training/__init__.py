"""Training, calibration and ONNX export (needs torch)."""
