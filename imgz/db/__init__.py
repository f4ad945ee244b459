"""The database: the only part of imgz that imports a database library (SQLAlchemy Core).

Named queries are functions that take a connection (``db.Connection``, from
``LocalConnections.get()`` or ``connect()``) and plain values, and return imgz's records
(``records.py``), never the driver's rows. Driver errors leave as imgz's errors (``errors.py``):
``DatabaseBusy``, ``NoStorage``, ``Conflict`` or ``DatabaseError``.

Modules, by noun:
  tables.py      the tables, declared once (the uploads table from ``records.Upload``)
  connection.py  engines, a connection per thread, ``transaction``, locks, error translation
  prepared.py    statements of every request's path, compiled once, run by the driver
  sqlite.py      all that only SQLite understands (PRAGMAs, BEGIN IMMEDIATE, WITHOUT ROWID, ...)
  postgresql.py  all that only PostgreSQL understands (the pool, autocommit, advisory locks, ...)
  migrations.py  schema versions and the steps between them
  users.py       users (passwords, disabled, admin, removal) and API keys
  quotas.py      each user's quota and what their uploads take, kept with every insert and delete
  sessions.py    signed-in sessions, one-time links, the install's secrets
  albums.py      albums, the uploads moved in and out of them, and categories
  listing.py     uploads in grids: newest first, paged by keyset, filtered
  uploads.py     uploads: insert, read as records, list, expire, delete
  tags.py        tags and the links of uploads to them
  files.py       stored files by path, and reserved names
  buckets.py     the rate limits' token buckets, where processes share them
  resumables.py  resumable (tus) uploads in progress, with the lease of their writer
  health.py      whether the database answers (the readiness check)
"""
from sqlalchemy.engine import Connection

from .albums import (add_album, add_category, album_counts, delete_album, get_album, get_album_by_id,
                     get_album_by_key, get_category, get_category_by_name, move_to_album,
                     rename_album, set_album_public, take_out_of_album, user_albums)
from .buckets import bucket_count, prepare_buckets, prune_buckets, take_token
from .connection import LocalConnections, connect, is_postgresql, lock, transaction, try_lock
from .listing import MAX_PAGE, ids_of, list_uploads, listed, page_ids
from .health import ready
from .files import all_file_paths, file_lookup, known_paths, release_name, reserve_name, upload_id_for_path
from .migrations import SCHEMA_VERSION, migrate, schema_version_of
from .postgresql import MissingDriver
from .sqlite import snapshot
from .tags import get_tag, popular_tags
from .uploads import (add_view, count_uploads, delete_upload, delete_uploads, expired_ids,
                      claim_expired, get_delete_hash, get_upload, get_upload_by_id, insert_upload,
                      iter_uploads, paths_of, public_id_taken, set_variant, tag_uploads)
from .resumables import (abandoned_resumables, add_resumable, delete_resumable, forget_resumables,
                         get_resumable, move_offset, release_lease, take_lease, user_resumables)
from .sessions import (add_link, add_session, count_sessions, end_session, end_sessions, link_user,
                       prune_sessions, secret, session_user, touch_session, use_link)
from .quotas import get_quota, recount_usage, set_quota
from .users import (add_key, add_user, count_keys, find_key, get_user, get_user_by_name, list_keys,
                    list_users, password_hash, remove_user, revoke_key, set_admin, set_disabled,
                    set_password, touch_key)

__all__ = [
    "Connection", "LocalConnections", "connect", "is_postgresql", "transaction", "lock", "try_lock",
    "MissingDriver", "ready", "SCHEMA_VERSION", "migrate", "schema_version_of",
    "add_user", "get_user", "get_user_by_name", "list_users", "password_hash", "set_password",
    "set_disabled", "set_admin", "remove_user", "get_quota", "set_quota", "recount_usage",
    "secret", "add_session", "session_user", "touch_session", "end_session", "end_sessions",
    "count_sessions", "prune_sessions", "add_link", "link_user", "use_link",
    "add_key", "find_key", "touch_key", "list_keys", "revoke_key", "count_keys",
    "add_album", "get_album", "add_category", "get_category", "get_category_by_name",
    "get_album_by_id", "get_album_by_key", "user_albums", "album_counts", "rename_album",
    "set_album_public", "delete_album", "move_to_album", "take_out_of_album",
    "MAX_PAGE", "list_uploads", "page_ids", "listed", "ids_of",
    "reserve_name", "release_name", "file_lookup", "known_paths", "upload_id_for_path", "all_file_paths",
    "insert_upload", "get_upload", "get_upload_by_id", "public_id_taken", "get_delete_hash",
    "iter_uploads", "count_uploads", "add_view", "set_variant", "delete_upload", "delete_uploads",
    "expired_ids", "claim_expired", "paths_of", "tag_uploads", "get_tag", "popular_tags",
    "prepare_buckets", "take_token", "prune_buckets", "bucket_count",
    "add_resumable", "get_resumable", "take_lease", "move_offset", "release_lease",
    "delete_resumable", "abandoned_resumables", "forget_resumables", "user_resumables", "snapshot",
]
