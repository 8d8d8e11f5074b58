"""Salesforce and HubSpot exports into the data contract.

Library use::

    from importers.crm import convert_crm, import_crm_export, load_config
    conversion = convert_crm("salesforce", "exports/sf", as_of="2025-05-02")
    conversion.tables["activities"], conversion.report.dropped

``import_crm_export`` also writes and validates the dataset (what the command does);
``to_salesforce_export`` (``sf_export``) and ``to_hubspot_export`` (``hubspot_export``) write contract
tables as a Salesforce or HubSpot API export (for tests, demos and benchmarks).
"""

from importers.crm.config import CrmConfig, config_from_dict, load_config
from importers.crm.convert import convert_crm, import_crm_export
from importers.crm.report import ConversionReport

__all__ = ["ConversionReport", "CrmConfig", "config_from_dict", "convert_crm", "import_crm_export", "load_config"]
