"""Turn flat exports and CRM exports into datasets in the data contract."""
