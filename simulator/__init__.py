"""Synthetic CRM history with known ground truth: demo data, test data and yardstick."""
