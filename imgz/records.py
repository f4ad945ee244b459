"""Small frozen records passed between layers: what the database keeps, and who an upload is
made for with which options, as plain values.

``Upload`` is also the one declaration of the upload columns: the database layer builds its
table, its insert and its reads from these fields (dates are aware UTC datetimes, flags bools).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .layout import file_key


@dataclass(frozen=True)
class Upload:
    """One stored upload as the database keeps it; dates are aware UTC datetimes.

    Every field but ``tags`` is a column of the uploads table (the database adds only the delete
    secret's hash). A new upload is built with ``id`` 0: storing it gives the id.
    """

    id: int
    public_id: str
    user_id: int | None
    album_id: int | None
    category_id: int | None
    kind: str                     # 'image' or 'video'
    folder: str                   # 'YYYY/MM/DD', the date folder of its keys
    name: str                     # stored name without extension
    extension: str
    mime: str
    size: int
    width: int
    height: int
    duration: int
    is_animated: bool
    is_360: bool
    nsfw: bool
    title: str
    description: str | None
    original_filename: str
    original_exifdata: str | None
    checksum: str
    source_checksum: str | None
    created_at: datetime
    expires_at: datetime | None
    thumb_size: int = 0
    thumb_width: int = 0
    thumb_height: int = 0
    medium_size: int = 0
    medium_width: int = 0
    medium_height: int = 0
    frame_size: int = 0
    frame_width: int = 0
    frame_height: int = 0
    views: int = 0
    likes: int = 0
    tags: tuple[str, ...] = field(default=())

    @property
    def stored_bytes(self) -> int:
        """What it takes in the store: the original and every variant (what quotas count)."""
        return self.size + self.thumb_size + self.medium_size + self.frame_size

    def relpath(self, variant: str = "") -> str:
        """The store key of one file of this upload ('' original, th, md, fr)."""
        return file_key(self.folder, self.name, self.extension, self.kind, variant)

    def variants(self) -> list[str]:
        """The variants this upload has besides its original: th, md, fr."""
        sizes = (("th", self.thumb_size), ("md", self.medium_size), ("fr", self.frame_size))
        return [variant for variant, size in sizes if size]

    def relpaths(self) -> list[str]:
        """The keys of every file this upload has in the store, the original first."""
        return [self.relpath(), *(self.relpath(v) for v in self.variants())]


@dataclass(frozen=True)
class StoredFile:
    """What the database knows of one stored file: its type and its upload's expiry."""

    mime: str
    expires_at: datetime | None


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool
    created_at: datetime
    has_password: bool = False
    disabled_at: datetime | None = None

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True)
class Quota:
    """A user's limits (None: none) and what their uploads take: stored bytes, every variant
    counted, and files (uploads)."""

    max_bytes: int | None
    max_files: int | None
    used_bytes: int
    used_files: int

    def refuses(self, size: int, files: int = 1) -> bool:
        """Whether ``files`` more uploads of ``size`` stored bytes would pass a limit."""
        return ((self.max_bytes is not None and self.used_bytes + size > self.max_bytes)
                or (self.max_files is not None and self.used_files + files > self.max_files))


@dataclass(frozen=True)
class UserSummary:
    """A user with how many uploads (and their stored bytes) and live keys it has, and its quota."""

    user: User
    uploads: int
    keys: int
    quota: Quota


@dataclass(frozen=True)
class Key:
    """An API key as stored (its hash stays in the database), with its owner's name and role."""

    id: int
    user_id: int
    user_name: str
    is_admin: bool
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Album:
    """An album: its public id is the API's album_id; its page is /a/<page_key>, an address
    nobody can guess, shown to anyone only when the album is public."""

    id: int
    public_id: str
    user_id: int
    name: str
    created_at: datetime
    is_public: bool = False
    page_key: str = ""


@dataclass(frozen=True)
class Listing:
    """Which uploads a grid shows: one user's (None: everyone's, for admins), narrowed by an
    album, a tag, a kind ('image', 'video') and words in their search text (params.search_words)."""

    user_id: int | None
    album_id: int | None = None
    tag_id: int | None = None
    kind: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Listed:
    """An upload in a grid (its tags not read), with its owner's name where everyone's are listed."""

    upload: Upload
    owner: str | None = None


@dataclass(frozen=True)
class Category:
    id: int
    name: str


@dataclass(frozen=True)
class Tag:
    id: int
    name: str
    url_key: str


@dataclass(frozen=True)
class PopularTag:
    """A tag with how many public uploads carry it."""

    name: str
    url_key: str
    uploads: int


@dataclass(frozen=True)
class Actor:
    """Who a request acts for: a user (by key, or by a signed-in session with its CSRF token)
    or a guest (user_id None)."""

    user_id: int | None
    is_admin: bool = False
    key_id: int | None = None
    session: bool = False  # signed in from a browser, not by key


@dataclass(frozen=True)
class Resumable:
    """A resumable (tus) upload in progress: its bytes live in the store's partial area under
    ``digest`` (the SHA-256 of its id, which is never stored), ``offset`` of ``length`` are in."""

    digest: str
    user_id: int
    length: int
    offset: int
    metadata: dict[str, str]
    handle: str  # the store's state of the partial bytes (an S3 multipart upload's id)
    created_at: datetime
    updated_at: datetime
    lease_owner: str | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class Options:
    """The optional upload parameters, already checked and parsed."""

    title: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    width: int | None = None
    nsfw: bool = False
    expires_at: datetime | None = None
    use_file_date: bool = False
    album_id: int | None = None
    category_id: int | None = None
