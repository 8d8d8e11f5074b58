"""Datasets, training, evaluation, MLflow tracking, registry and the command line."""
