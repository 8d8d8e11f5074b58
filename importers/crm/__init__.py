"""Salesforce and HubSpot exports into the data contract."""
