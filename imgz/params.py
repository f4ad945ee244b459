"""The rules for the upload endpoint's optional parameters (SPEC §2), as small pure functions."""
from __future__ import annotations

import re
import unicodedata

from .errors import InvalidParameter

MAX_TITLE = 100
MAX_DESCRIPTION = 10_000
MAX_TAG = 32
MAX_TAGS = 50
MAX_WIDTH = 100_000
_WIDTH = re.compile(r"[0-9]{1,6}")
_TITLE_RUNS = re.compile(r"[\s_-]+")


# Joiners that emoji sequences (family, profession emoji) and scripts such as Persian and the
# Indic ones need; every other format character is invisible and only good for spoofing.
_JOINERS = "\u200c\u200d"


def _is_dropped(ch: str) -> bool:
    """Whether a character never belongs in client text.

    Cc (C0/C1 controls), Cs (lone surrogates from bad UTF-8), the line and paragraph separators,
    and Cf (format) but the joiners: bidi overrides and isolates (U+202A-202E, U+2066-2069) make
    'invoice\u202egpj.exe' read as 'invoiceexe.jpg'; zero-width spaces, word joiners and BOMs
    hide inside names and tags. Tag characters (U+E0020-E007F) are Cf too, so the rare
    subdivision flag emoji lose their tail (an invisible carrier of text is worth more to drop).
    """
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch not in _JOINERS
    return category in {"Cc", "Cs", "Zl", "Zp"}


def clean_text(value: str, keep: str = "") -> str:
    """Client text without the characters that never belong in it; those in ``keep`` (e.g. newline
    and tab for a description) stay.

    Every path that takes text from a client (titles, descriptions, tags, file names, names taken
    from a URL) goes through here, so a new rule applies to all of them at once.
    """
    return "".join(ch for ch in value if ch in keep or not _is_dropped(ch))


def absent(value: str | None) -> bool:
    """Empty and "0" count as not given (SPEC §2)."""
    return value is None or value == "" or value == "0"


def _one_line(value: str) -> str:
    """Controls removed, tabs and line breaks turned to spaces and every run of spaces collapsed."""
    return " ".join(clean_text(value, keep="\t\n\r").split())


def clean_title(value: str) -> str:
    return _one_line(value)[:MAX_TITLE].strip()


def title_from_filename(filename: str) -> str:
    """'Badgers _ animated music video _ MrWeebl.mp4' -> 'Badgers animated music video MrWeebl'."""
    stem = filename.rsplit(".", 1)[0] if "." in filename.lstrip(".") else filename
    return clean_title(_TITLE_RUNS.sub(" ", stem))


def clean_description(value: str, *, cut: bool = False) -> str | None:
    """Controls but newline and tab removed; past MAX_DESCRIPTION refused, or with ``cut`` (for a
    description read from the file's metadata) cut there."""
    text = clean_text(value, keep="\n\t")
    if len(text) > MAX_DESCRIPTION:
        if not cut:
            raise InvalidParameter("Description too long")
        text = text[:MAX_DESCRIPTION]
    text = text.strip()
    return text or None


def clean_tag(value: str) -> str | None:
    """One tag as stored: NFKC-normalised (so 'café' typed in NFC or NFD, or 'ＡＢＣ' in full width,
    is one tag), cleaned, whitespace collapsed; None when it is refused.

    The rules are checked after normalising, since NFKC can make a '/' (from '／'), dots (from '．'),
    a comma (from '，') or a longer text (a ligature).
    """
    tag = _one_line(unicodedata.normalize("NFKC", value))
    # a tag of dots only would make its page URL /tag/.. (the site's root)
    if not tag.strip(".") or len(tag) > MAX_TAG or any(ch in tag for ch in "/#,"):
        return None
    return tag


def tag_key(name: str) -> str:
    """The URL key of a tag: NFKC case-folded (NFKC again, since folding can undo it), whitespace
    as '-'.

    ASCII tags keep the key they always had (lower case, '-' for spaces), so their URLs stay.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return "-".join(folded.split())


def parse_tags(value: str | None) -> list[str]:
    """Comma separated; each cleaned by ``clean_tag``; refused ones and those whose key an earlier
    one has dropped; 50 kept."""
    if absent(value):
        return []
    kept: list[str] = []
    seen: set[str] = set()
    # normalised before splitting, so a full-width comma separates tags like a comma
    for raw in unicodedata.normalize("NFKC", value or "").split(","):
        tag = clean_tag(raw)
        if tag is None:
            continue
        key = tag_key(tag)
        if key in seen:
            continue
        seen.add(key)
        kept.append(tag)
        if len(kept) == MAX_TAGS:
            break
    return kept


def parse_width(value: str | None) -> int | None:
    """A whole number from 1 to 100,000, or None when absent; anything else is 400 Invalid width."""
    if value is None or value == "":
        return None
    text = value.strip()
    if not _WIDTH.fullmatch(text):
        raise InvalidParameter("Invalid width")
    width = int(text)
    if width < 1 or width > MAX_WIDTH:
        raise InvalidParameter("Invalid width")
    return width


def parse_flag(value: str | None) -> bool:
    return value is not None and value.strip() == "1"


def parse_format(value: str | None) -> str:
    text = (value or "").strip().lower()
    return text if text in {"json", "txt", "redirect"} else "json"


def client_basename(filename: str | None) -> str:
    """The client's file name without any directory part, control characters or NULs."""
    if not filename:
        return ""
    base = re.split(r"[\\/]", filename)[-1]
    base = clean_text(base).strip()
    return "" if base in {".", ".."} else base[:255]


# A search matches the title, the original name and the start of the description. An upload's
# search text is kept in an index, whose entries PostgreSQL caps at about 2.7 kB: 600 characters
# are at most 2,400 bytes of UTF-8.
SEARCH_TEXT = 600
MAX_SEARCH = 100


def search_text(title: str, original_filename: str, description: str | None) -> str:
    """What a search of "My uploads" looks in: lower-cased, lines joined, cut to its length."""
    joined = " ".join(part for part in (title, original_filename, description or "") if part)
    return " ".join(joined.lower().split())[:SEARCH_TEXT]


def search_words(value: str | None) -> str:
    """A search as typed, in the form search_text keeps: lower-cased, spaces run together, cut."""
    return " ".join(clean_text(value or "").lower().split())[:MAX_SEARCH]
