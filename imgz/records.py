"""Small frozen records passed between layers: a stored upload and its files."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Upload:
    """One stored upload as the database keeps it; dates are aware UTC datetimes."""

    id: int
    public_id: str
    user_id: int | None
    album_id: int | None
    category_id: int | None
    kind: str                     # 'image' or 'video'
    folder: str                   # 'YYYY/MM/DD', relative to <data>/images
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
    def variant_extension(self) -> str:
        """Thumbs, mediums and frames of videos are JPEG; of images, the original's format."""
        return "jpeg" if self.kind == "video" else self.extension

    def relpath(self, variant: str = "") -> str:
        """The path of one file of this upload under <data>/images ('' original, th, md, fr)."""
        if not variant:
            return f"{self.folder}/{self.name}.{self.extension}"
        ext = "jpeg" if variant == "fr" else self.variant_extension
        return f"{self.folder}/{self.name}.{variant}.{ext}"

    def relpaths(self) -> list[str]:
        """Every file this upload has on disk, the original first."""
        paths = [self.relpath()]
        if self.thumb_size:
            paths.append(self.relpath("th"))
        if self.medium_size:
            paths.append(self.relpath("md"))
        if self.frame_size:
            paths.append(self.relpath("fr"))
        return paths
