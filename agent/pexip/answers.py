"""Saved answers of Pexip Infinity's configuration API, read for `import-pexip` (docs/import-pexip.md).

Owns telling a real answer from anything else: a file is one JSON answer of
`/api/admin/configuration/v1/KIND/`, either the list form
`{"meta": {"limit", "next", "offset", "previous", "total_count"}, "objects": [...]}`
or one object (`.../KIND/ID/`). It checks the kind of every object (from its
`resource_uri`, or from the fields that kind always has), refuses one page of a
longer list (`meta.next` set: the objects on the other pages would be silently
missing from the node's config), and turns every way a file can be wrong into
one plain sentence (`AnswerError`). What the objects mean is agent/pexip/importer.py's.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

API_PREFIX = "/api/admin/configuration/v1/"
RESOURCE_URI_RE = re.compile(r"^(?:https?://[^/]+)?/api/admin/configuration/v1/([a-z_]+)/(\d+)/?$")
# A field every object of that kind carries, for answers saved without resource_uri.
KIND_FIELDS = {"event_sink": ("name", "url"), "system_location": ("name", "event_sinks"), "global": ()}


class AnswerError(Exception):
    """A file that is not the answer asked for: one plain sentence for the operator."""


def uri_kind_and_id(uri: Any) -> tuple[str, int] | None:
    """`/api/admin/configuration/v1/event_sink/3/` -> ("event_sink", 3); None if it is not such a URI."""
    m = RESOURCE_URI_RE.match(uri) if isinstance(uri, str) else None
    return (m.group(1), int(m.group(2))) if m else None


def read_answer(path: str, kind: str) -> list[dict[str, Any]]:
    """The objects of the saved answer at `path`, every one of `kind`; AnswerError otherwise."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise AnswerError(f"cannot read {path}: {exc.strerror or exc}") from None
    doc = _decode(path, raw, kind)
    objects = _objects(path, doc, kind)
    for i, obj in enumerate(objects):
        _check_kind(path, i, obj, kind)
    return objects


def _decode(path: str, raw: bytes, kind: str) -> Any:
    expected = f"a saved answer of {API_PREFIX}{kind}/"
    if raw.lstrip()[:1] == b"<":
        raise AnswerError(f"{path} is HTML, not {expected} (was it a login or error page?)")
    if not raw.strip():
        raise AnswerError(f"{path} is empty, not {expected}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AnswerError(f"{path} is not valid JSON ({exc}): is it truncated? Expected {expected}") from None


def _objects(path: str, doc: Any, kind: str) -> list[dict[str, Any]]:
    if isinstance(doc, list):
        raise AnswerError(
            f'{path} is a JSON array; the API answers an object with "meta" and "objects", or one {kind} object'
        )
    if not isinstance(doc, dict):
        raise AnswerError(f"{path} holds a JSON {type(doc).__name__}, not a {kind} answer")
    if "objects" not in doc:
        if "meta" in doc:
            raise AnswerError(f'{path} has "meta" but no "objects": it is not a complete {kind} answer')
        return [doc]  # one object, as .../KIND/ID/ answers
    objects = doc["objects"]
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise AnswerError(f'{path}: "objects" must be a list of {kind} objects')
    _check_complete(path, doc.get("meta"), len(objects), kind)
    return objects


def _check_complete(path: str, meta: Any, count: int, kind: str) -> None:
    """Refuse one page of a longer list: importing it would leave out the rest without a word."""
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise AnswerError(f'{path}: "meta" must be an object')
    total = meta.get("total_count")
    if meta.get("next") or (isinstance(total, int) and not isinstance(total, bool) and total > count):
        shown = f"{count} of {total}" if isinstance(total, int) else f"{count}"
        raise AnswerError(
            f"{path} is one page of a longer list ({shown} {kind} objects): save it again with ?limit=0 to get them all"
        )


def _check_kind(path: str, index: int, obj: dict[str, Any], kind: str) -> None:
    uri = obj.get("resource_uri")
    if uri is not None:
        found = uri_kind_and_id(uri)
        if found is None:
            raise AnswerError(f"{path}: object {index + 1} has a resource_uri that is not the configuration API's")
        if found[0] != kind:
            raise AnswerError(
                f"{path} holds {found[0]} objects, not {kind} ones: check which file goes with which option"
            )
        return
    missing = [f for f in KIND_FIELDS[kind] if f not in obj]
    if missing or (kind == "global" and not any(k.startswith("es_") for k in obj)):
        what = ", ".join(missing) if missing else "es_* fields"
        raise AnswerError(f"{path}: object {index + 1} is not a {kind} object (it has no {what})")
