"""API keys: loading them and checking a request's ``Authorization`` header in constant time.

Keys are held only as SHA-256 digests, so a key never sits in memory as text after start-up
and never reaches a log line; the check hashes the presented token and compares it with
every configured digest using :func:`hmac.compare_digest` (no early exit).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from serving.settings import API_KEYS_ENV, API_KEYS_FILE_ENV, Settings, SettingsError

logger = logging.getLogger(__name__)

MIN_KEY_LENGTH = 16


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class ApiKeys:
    """The configured keys (as digests); empty means the service runs without authentication."""

    def __init__(self, keys: list[str]):
        self._digests = tuple(_digest(k.encode("utf-8")) for k in keys)

    def __len__(self) -> int:
        return len(self._digests)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def key_index(self, authorization: bytes | None) -> int | None:
        """Index of the configured key the header presents (None: none), compared in constant time per key.

        Identifies the caller for rate limiting without keeping the key itself.
        """
        if not self._digests or not authorization:
            return None
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        presented = _digest(token.strip())
        found = None
        for i, digest in enumerate(self._digests):
            if hmac.compare_digest(presented, digest):
                found = i
        return found

    def check_header(self, authorization: bytes | None) -> bool:
        """True when the header is ``Bearer <key>`` for a configured key (constant time per key)."""
        if not self._digests:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        presented = _digest(token.strip())
        ok = False
        for digest in self._digests:
            ok |= hmac.compare_digest(presented, digest)
        return ok


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, treat it as reachable from outside


def exposure_problem(host: str, insecure_no_keys: bool = False, settings: Settings | None = None) -> str | None:
    """Why the service must not start on ``host`` (None when it may): no API keys on a non-loopback address.

    Raises:
        SettingsError: the key settings cannot be read (as :func:`load_api_keys`).
    """
    from serving.settings import load_settings

    if is_loopback(host) or insecure_no_keys:
        return None
    if load_api_keys(settings or load_settings()).enabled:
        return None
    return (f"refusing to serve on {host} without API keys: set {API_KEYS_ENV} or {API_KEYS_FILE_ENV} "
            f"(or pass --insecure-no-keys to expose it anyway, e.g. behind your own gateway)")


def load_api_keys(settings: Settings) -> ApiKeys:
    """Keys from ``ACTIVITY_SCORER_API_KEYS`` and ``ACTIVITY_SCORER_API_KEYS_FILE``.

    Raises:
        SettingsError: the key file is missing or unreadable, or a key is shorter than
            16 characters (the message never shows a key).
    """
    keys: list[str] = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise SettingsError(f"{API_KEYS_FILE_ENV}: cannot read {path} ({err.strerror})") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for i, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_LENGTH:
            raise SettingsError(f"{API_KEYS_ENV} / {API_KEYS_FILE_ENV}: key #{i} is shorter than "
                                f"{MIN_KEY_LENGTH} characters")
    return ApiKeys(keys)
