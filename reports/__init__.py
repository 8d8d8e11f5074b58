"""Offline reports (manager report, monitoring): figures as JSON, self-contained HTML pages, static plots."""
