"""A person's uploads and albums, as the browser manages them: who may see, delete and move what.

The rules, in one place: a user lists, deletes and moves their own uploads, and only into their
own albums; an admin also lists everyone's and may delete any. Someone else's upload or album is
"not found" (404), never "forbidden": its existence is nobody else's business, and a request
that names one changes nothing at all. A deletion is the service's (rows, then files), as the
delete URL's. An album page shows to anyone only when the album is public; a private one exists
for its owner and admins alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from . import db, ids, params
from .chevereto import Site, duration_time, file_url, viewer_path
from .errors import Forbidden, ImgzError, InvalidParameter
from .records import Album, Listed, Listing
from .service import Service

PAGE_SIZE = 48
MAX_ALBUMS = 500  # per user
MAX_ALBUM_NAME = 100
KINDS = ("image", "video")


class NotFound(ImgzError):
    status, code, message = 404, 404, "There is no such upload of yours."


@dataclass(frozen=True)
class Person:
    """Who manages: a signed-in user."""

    id: int
    is_admin: bool = False


@dataclass(frozen=True)
class Item:
    """An upload as a grid shows it."""

    public_id: str
    title: str
    kind: str
    path: str                     # its viewer page
    link: str                     # the same, absolute: what "Copy link" copies
    thumb: str | None
    width: int
    height: int
    duration: str                 # MM:SS for a video, else ''
    expires: str                  # 'expires in 3 days', or ''
    nsfw: bool
    owner: str | None


@dataclass(frozen=True)
class Page:
    """One page of a grid: its items and the cursors of the pages around it (None: none)."""

    items: list[Item]
    older: int | None             # ?before= of the next page
    newer: int | None             # ?after= of the page before


def expires_in(moment: datetime | None, now: datetime) -> str:
    """'expires in 3 days' (the largest whole unit), '' for an upload kept for good."""
    if moment is None:
        return ""
    seconds = int((moment - now).total_seconds())
    for unit, length in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= length:
            count = seconds // length
            return f"expires in {count} {unit}{'s' if count != 1 else ''}"
    return "expires in under a minute"


def _item(found: Listed, site: Site, now: datetime) -> Item:
    upload = found.upload
    path = viewer_path(upload, site)
    return Item(public_id=upload.public_id, title=upload.title or upload.name, kind=upload.kind,
                path=path, link=site.base_url + path,
                thumb=file_url(site, upload.relpath("th")) if upload.thumb_size else None,
                width=upload.thumb_width, height=upload.thumb_height,
                duration=duration_time(upload.duration) if upload.kind == "video" else "",
                expires=expires_in(upload.expires_at, now), nsfw=upload.nsfw, owner=found.owner)


def page(service: Service, listing: Listing, site: Site, size: int = PAGE_SIZE,
         before: int | None = None, after: int | None = None) -> Page:
    """A page of a grid, newest first. A page of newer uploads that comes out short is the first
    page instead (full, and with no newer one)."""
    conn, now = service.connection(), service.now()
    size = max(1, min(size, db.MAX_PAGE))
    found, more = db.list_uploads(conn, listing, size, before=before, after=after)
    if after is not None and before is None and not more and len(found) < size:
        found, more, after = *db.list_uploads(conn, listing, size), None
    newer_page = after is not None or before is not None
    older_page = more if after is None or before is not None else True
    live = [f for f in found if f.upload.expires_at is None or f.upload.expires_at > now]
    if listing.user_id is not None:  # one person's: no owner to name
        live = [Listed(f.upload) for f in live]
    return Page(items=[_item(f, site, now) for f in live],
                older=found[-1].upload.id if found and older_page else None,
                newer=found[0].upload.id if found and newer_page and (after is None or more) else None)


def listing_for(service: Service, me: Person, everyone: bool = False, album: str = "",
                tag: str = "", kind: str = "", text: str = "") -> Listing:
    """The listing a person asked for: their own uploads (everyone's for an admin who asks),
    narrowed by an album (its public id: one of theirs), a tag (its name), a kind and words."""
    if everyone and not me.is_admin:
        raise Forbidden("Only admins can list everyone's uploads.")
    conn = service.connection()
    album_id = None
    if album:
        found = db.get_album(conn, album)
        if found is None or (found.user_id != me.id and not everyone):
            raise NotFound("There is no such album of yours.")
        album_id = found.id
    tag_id = None
    if tag.strip():
        found_tag = db.get_tag(conn, params.tag_key(tag.strip()))
        tag_id = found_tag.id if found_tag else 0  # an unknown tag: a tag no upload carries
    return Listing(user_id=None if everyone else me.id, album_id=album_id, tag_id=tag_id,
                   kind=kind if kind in KINDS else None, text=params.search_words(text))


def chosen(service: Service, me: Person, public_ids: list[str], any_owner: bool) -> list[Listed]:
    """The uploads picked by public id: all the person's own (any one's for an admin where
    ``any_owner``), or NotFound and nothing is done."""
    if not public_ids:
        raise InvalidParameter("Pick at least one upload first.")
    if len(public_ids) > db.MAX_PAGE:
        raise InvalidParameter(f"At most {db.MAX_PAGE} uploads at once.")
    wanted = set(public_ids)
    found = db.ids_of(service.connection(), sorted(wanted))
    allowed = [f for f in found if f.upload.user_id == me.id or (any_owner and me.is_admin)]
    if len(allowed) != len(wanted):
        raise NotFound("Some of these uploads are not yours or are gone: nothing was changed.")
    return allowed


def delete(service: Service, me: Person, public_ids: list[str]) -> int:
    """Delete these uploads (an admin: anyone's) as their delete URL would; how many went."""
    return sum(service.delete(f.upload) for f in chosen(service, me, public_ids, any_owner=True))


def own_album(service: Service, me: Person, public_id: str) -> Album:
    """One of the person's albums, by its public id; another's is not found."""
    album = db.get_album(service.connection(), public_id)
    if album is None or album.user_id != me.id:
        raise NotFound("There is no such album of yours.")
    return album


def move(service: Service, me: Person, public_ids: list[str], album: str | None) -> int:
    """Put the person's uploads into one of their albums (None: into none); how many moved."""
    target = own_album(service, me, album).id if album else None
    mine = chosen(service, me, public_ids, any_owner=False)
    return db.move_to_album(service.connection(), [f.upload.id for f in mine], me.id, target)


def album_choices(service: Service, me: Person) -> list[Album]:
    """The person's albums, newest first, to pick from (without counting their uploads)."""
    return db.user_albums(service.connection(), me.id, MAX_ALBUMS)


def albums(service: Service, me: Person) -> list[tuple[Album, int]]:
    """The person's albums, newest first, each with how many uploads it holds."""
    conn = service.connection()
    found = db.user_albums(conn, me.id, MAX_ALBUMS)
    counts = db.album_counts(conn, [a.id for a in found])
    return [(a, counts.get(a.id, 0)) for a in found]


def album_name(name: str) -> str:
    cleaned = params.clean_title(name)[:MAX_ALBUM_NAME]
    if not cleaned:
        raise InvalidParameter("Give the album a name.")
    return cleaned


def create_album(service: Service, me: Person, name: str) -> Album:
    conn = service.connection()
    cleaned = album_name(name)
    if len(db.user_albums(conn, me.id, MAX_ALBUMS)) >= MAX_ALBUMS:
        raise InvalidParameter(f"You have {MAX_ALBUMS} albums already: delete one first.")
    for _ in range(16):
        public_id = ids.public_id(service.config.id_length)
        if db.get_album(conn, public_id) is None:
            db.add_album(conn, public_id, me.id, cleaned, service.now())
            album = db.get_album(conn, public_id)
            assert album is not None
            return album
    raise RuntimeError("could not find a free album id")


def rename_album(service: Service, me: Person, public_id: str, name: str) -> Album:
    album = own_album(service, me, public_id)
    new_name = album_name(name)
    db.rename_album(service.connection(), album.id, me.id, new_name)
    return replace(album, name=new_name)


def set_public(service: Service, me: Person, public_id: str, public: bool) -> Album:
    album = own_album(service, me, public_id)
    db.set_album_public(service.connection(), album.id, me.id, public)
    return album


def delete_album(service: Service, me: Person, public_id: str) -> Album:
    """Delete one of the person's albums; its uploads stay, in no album."""
    album = own_album(service, me, public_id)
    db.delete_album(service.connection(), album.id, me.id)
    return album


def album_page(service: Service, page_key: str, me: Person | None) -> Album | None:
    """The album at /a/<page_key> when this person may see it: anyone a public one, the owner
    and admins a private one; else None (not found)."""
    album = db.get_album_by_key(service.connection(), page_key)
    if album is None:
        return None
    if album.is_public or (me is not None and (me.id == album.user_id or me.is_admin)):
        return album
    return None
