"""The wire contract of SPEC §4, written once and asserted by one helper each."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLE = json.loads((Path(__file__).parent / "fixtures" / "chevereto_example.json").read_text())

INT, FLOAT, STR, NULL, LIST, OBJ, BOOL = int, float, str, type(None), list, dict, bool
NUMBER = (int, float)

# key -> the JSON types it may have (SPEC §4's table); FLOAT accepts whole numbers too.
IMAGE_KEYS: dict[str, tuple[type, ...]] = {
    "name": (STR,), "extension": (STR,), "size": (INT,), "width": (INT,), "height": (INT,),
    "date": (STR,), "date_gmt": (STR,), "title": (STR,), "tags": (LIST,),
    "description": (STR, NULL), "nsfw": (INT,), "storage_mode": (STR,), "checksum": (STR,),
    "source_checksum": (STR, NULL), "original_filename": (STR,), "original_exifdata": (STR, NULL),
    "views": (INT,), "likes": (INT,), "category_id": (INT, NULL), "chain": (INT,),
    "thumb_size": (INT,), "medium_size": (INT,), "frame_size": (INT,),
    "expiration_date_gmt": (STR, NULL), "is_animated": (INT,), "is_approved": (INT,),
    "is_360": (INT,), "duration": (INT,), "type": (STR,), "tags_string": (STR,), "file": (OBJ,),
    "id_encoded": (STR,), "filename": (STR,), "mime": (STR,), "url": (STR,), "ratio": NUMBER,
    "size_formatted": (STR,), "image": (OBJ,), "thumb": (OBJ,), "medium": (OBJ,),
    "url_frame": (STR,), "duration_time": (STR,), "url_viewer": (STR,), "path_viewer": (STR,),
    "url_short": (STR,), "display_url": (STR,), "display_width": (INT,),
    "display_height": (INT,), "views_label": (STR,), "likes_label": (STR,),
    "how_long_ago": (STR,), "date_fixed_peer": (STR,), "title_truncated": (STR,),
    "title_truncated_html": (STR,), "is_use_loader": (BOOL,), "display_title": (STR,),
    "delete_url": (STR,),
}
FILE_KEYS = ("filename", "name", "mime", "extension", "url", "size")


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # JSON true/false are Python bools, which are ints too: keep them apart.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def assert_file_object(obj: dict, *, present: bool) -> None:
    if present:
        assert set(obj) == set(FILE_KEYS), obj
        for key in FILE_KEYS:
            assert _is(obj[key], (INT,) if key == "size" else (STR,)), (key, obj[key])
    else:
        assert set(obj) == set(FILE_KEYS) - {"size"}, obj
        assert all(v is None for v in obj.values()), obj


def assert_image_object(image: dict, *, kind: str = "image") -> None:
    """Every key of SPEC §4's table present with an allowed type; frame only for videos."""
    missing = set(IMAGE_KEYS) - set(image)
    assert not missing, f"missing keys: {sorted(missing)}"
    for key, types in IMAGE_KEYS.items():
        assert _is(image[key], types), f"{key}: {image[key]!r} is not {types}"
    if kind == "video":
        assert_file_object(image["frame"], present=True)
    else:
        assert "frame" not in image
    assert_file_object(image["image"], present=True)
    assert_file_object(image["thumb"], present=image["thumb_size"] > 0)
    assert_file_object(image["medium"], present=image["medium_size"] > 0)
    assert image["file"] == {"resource": {"type": "url"}}
    for tag in image["tags"]:
        assert set(tag) == {"name", "name_safe_html", "url_key", "url"}
    assert image["type"] == kind


def assert_upload_ok(response: Any) -> dict:
    """A successful JSON upload answer; returns its image object."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status_code"] == 200
    assert body["success"] == {"message": "file uploaded", "code": 200}
    assert body["status_txt"] == "OK"
    return body["image"]


def assert_error(response: Any, status: int, code: int, message: str | None = None,
                 *, startswith: str | None = None) -> dict:
    """An API error in Chevereto's shape with the HTTP status, code and message expected."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"status_code", "error", "status_txt"}, body
    assert body["status_code"] == status
    assert set(body["error"]) == {"message", "code"}
    assert body["error"]["code"] == code, body
    if message is not None:
        assert body["error"]["message"] == message, body
    if startswith is not None:
        assert body["error"]["message"].startswith(startswith), body
    assert isinstance(body["status_txt"], str) and body["status_txt"]
    return body
