"""The S3 store on a real SeaweedFS: the store contract, then what only a bucket's store does
(multipart puts in flat memory, conditional puts, ranges by request, the failure paths)."""
from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from imgz.store.s3 import S3Store
from store_contract import DATA, KEY, StoreContract


def make_store(s3, prefix: str = "", **kw) -> S3Store:
    store = S3Store(s3.client, s3.name, prefix, **kw)
    store.prepare()
    return store


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, s3) -> S3Store:
        return make_store(s3, s3.prefix)


class TestS3StoreWithoutConditionalPuts(StoreContract):
    """A store that does not honour If-None-Match: a HEAD before each put keeps keys unique."""

    @pytest.fixture
    def store(self, s3) -> S3Store:
        return make_store(s3, s3.prefix, conditional=False)
