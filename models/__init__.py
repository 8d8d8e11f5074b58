"""LightGBM models, calibration and the model bundle that crosses from training to serving."""
