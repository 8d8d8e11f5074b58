"""The BentoML scoring service (shared/API.md)."""
