"""CRM history -> point-in-time correct features and labels (pandas only)."""
