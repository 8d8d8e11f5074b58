"""Errors of the CRM adapters."""

from __future__ import annotations


class CrmInputError(ValueError):
    """The export cannot be converted: a missing file, an unparseable value, ...

    The message names the file, column and rows involved.
    """


class CrmConfigError(ValueError):
    """The adapter config is invalid (unknown key, bad value, forbidden column)."""
