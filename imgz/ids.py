"""Public ids, API keys and delete secrets: making them, hashing them, comparing them.

Ids are random base62 so uploads cannot be enumerated. Keys and secrets carry at least 128 random
bits and are stored only as SHA-256 hex digests; a key is found by its digest through an index, so
the lookup never compares secret bytes one by one.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_PREFIX = "imgz_"


def random_base62(length: int) -> str:
    """Uniform base62 from the system's CSPRNG (bytes past 247 are skipped: 248 = 4 x 62)."""
    out: list[str] = []
    while len(out) < length:
        out.extend(BASE62[b % 62] for b in secrets.token_bytes(length + 8) if b < 248)
    return "".join(out[:length])


def public_id(length: int) -> str:
    return random_base62(length)


def new_api_key() -> str:
    """A new key: the prefix and 32 base62 characters (about 190 bits)."""
    return KEY_PREFIX + random_base62(32)


def new_delete_secret() -> str:
    """A delete secret: 32 hex digits of randomness (128 bits) plus 16 more for margin."""
    return secrets.token_hex(24)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(secret: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented secret with a stored digest."""
    return hmac.compare_digest(digest(secret), stored_digest)
