"""Where an external collection's table is: ``externalSource``, parsed and loaded.

:class:`ExternalSource` parses the three forms of ``externalSource`` (a pyiceberg catalog, a
``metadata.json`` location, or a Zilliz-style ``volume://`` URL mapped to a local folder) and
loads a fresh :class:`pyiceberg.table.Table` per job. Also here: the helpers the other modules
of the package share (parameter names in messages, JSON loading, key checks, :func:`redact`,
:func:`snapshot_schema`, :func:`read_schema`). See the package docstring for the whole picture.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence
from urllib.parse import unquote, urlparse

from ..errors import InvalidArgumentError, NotFoundError, VecstoreError

if TYPE_CHECKING:  # pyiceberg is imported lazily: `import vecstore` must not pay for it
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

__all__ = ["ExternalSource", "redact", "snapshot_schema"]

SOURCE = "externalSource"
SPEC = "externalSpec"
_SAMPLE = 5


def _sample(values: Sequence[Any], limit: int = _SAMPLE) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _load_json(value: Any, param: str) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidArgumentError(f"{param}: not valid JSON ({e.msg} at position {e.pos})") from None
    return value


def _check_keys(d: dict, allowed: Iterable[str], param: str) -> None:
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise InvalidArgumentError(
            f"{param}: unknown key(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(sorted(allowed))}")


# --------------------------------------------------------------------------------------------
# externalSource
# --------------------------------------------------------------------------------------------

_SECRET_KEY = re.compile(r"secret|password|passwd|token|credential|access[-_.]?key|session|private|signature",
                         re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]+:)(?P<pw>[^@/\s]+)(?P<tail>@)", re.IGNORECASE)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with credentials masked: values of keys that look secret
    (``s3.secret-access-key``, ``token``, ``password``, ``access_key_value``...) become ``"***"``
    and passwords inside URIs (``postgresql://u:pw@host``) become ``***``. Used for job records.

    >>> redact({"uri": "postgresql://me:pw@db/x", "s3.secret-access-key": "abc", "n": 1})
    {'uri': 'postgresql://me:***@db/x', 's3.secret-access-key': '***', 'n': 1}
    """
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _URI_PASSWORD.sub(r"\g<head>***\g<tail>", value)
    return value


def _local_path(location: str) -> Path | None:
    """The local filesystem path of ``file://…`` or a plain path; None for other schemes."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and location[1:3] in (":\\", ":/")):  # C:\ on Windows
        return Path(location)
    return None


_META_VERSION = re.compile(r"^(?:v)?(\d+)(?:[-.].*)?\.metadata\.json$")


def _newest_metadata_file(table_dir: Path) -> Path:
    """The current ``metadata.json`` of a table folder without a catalog: the one named by
    ``metadata/version-hint.text`` if present, else the highest ``NNNNN-<uuid>.metadata.json`` /
    ``vN.metadata.json`` (ties broken by modification time)."""
    meta = table_dir / "metadata"
    if not meta.is_dir():
        raise NotFoundError(f"{SOURCE}: {table_dir} is not an Iceberg table folder (no metadata/ sub-folder)")
    hint = meta / "version-hint.text"
    if hint.is_file():
        content = hint.read_text().strip()
        for candidate in (content, f"v{content}.metadata.json", f"{content}.metadata.json"):
            if (meta / candidate).is_file():
                return meta / candidate
    best: tuple[int, float] | None = None
    best_path: Path | None = None
    for p in meta.iterdir():
        m = _META_VERSION.match(p.name)
        if m and p.is_file():
            rank = (int(m.group(1)), p.stat().st_mtime)
            if best is None or rank > best:
                best, best_path = rank, p
    if best_path is None:
        raise NotFoundError(f"{SOURCE}: no *.metadata.json file in {meta}")
    return best_path


@dataclass(frozen=True)
class ExternalSource:
    """A parsed ``externalSource``. Exactly one of three forms:

    * ``{"type": "iceberg", "catalog": {pyiceberg catalog properties}, "table": "ns.table"}``;
      ``catalog.name`` must be the name the writer used (a ``SqlCatalog`` keys its rows by it;
      default ``"default"``). ``table`` may also be a list ``["ns", "table"]``.
    * ``{"type": "iceberg", "metadataLocation": ".../metadata/00003-….metadata.json"}`` (Milvus
      style; a table folder is accepted too and resolved to its newest metadata file).
    * ``{"type": "volume", "path": "volume://NAME/path/to/table"}`` (Zilliz Cloud style), with
      ``NAME`` mapped to a local folder by ``volumes``; the table folder's newest metadata file
      is read, so a volume source always sees the latest commit.

    A plain string is accepted as well: a JSON object, a ``volume://`` URL, or a path/URI of a
    ``.metadata.json`` file or table folder. ``to_json()`` gives the canonical dict (what a job
    record stores; pass ``redact_secrets=True`` to mask credentials).
    """

    kind: str  # "catalog" | "metadata" | "volume"
    catalog: dict | None = None
    table: tuple[str, ...] | None = None
    metadata_location: str | None = None
    volume: str | None = None
    volume_path: str | None = None
    local_path: str | None = None  # the resolved folder of a volume source

    @classmethod
    def parse(cls, value: str | dict, *, volumes: dict[str, str | os.PathLike] | None = None) -> "ExternalSource":
        """Parse and validate; raises :class:`InvalidArgumentError` naming the bad key.

        >>> ExternalSource.parse('{"type": "iceberg", "metadataLocation": "/lake/t/metadata/v2.metadata.json"}').kind
        'metadata'
        >>> ExternalSource.parse("volume://lake/db/books", volumes={"lake": "/data/lake"}).local_path
        '/data/lake/db/books'
        """
        value = _load_json(value, SOURCE)
        if isinstance(value, ExternalSource):
            return value
        if isinstance(value, str):
            text = value.strip()
            if not text:
                raise InvalidArgumentError(f"{SOURCE}: expected a JSON object or a location, got an empty string")
            if text.lower().startswith("volume://"):
                value = {"type": "volume", "path": text}
            else:
                value = {"type": "iceberg", "metadataLocation": text}
        if not isinstance(value, dict):
            raise InvalidArgumentError(
                f"{SOURCE}: expected a JSON object (or a metadata.json / volume:// location), got {type(value).__name__}")
        kind = value.get("type")
        if kind is None:
            kind = "volume" if "path" in value and "catalog" not in value else "iceberg"
        if not isinstance(kind, str) or kind.lower() not in ("iceberg", "iceberg-table", "volume"):
            raise InvalidArgumentError(f"{SOURCE}.type: expected 'iceberg' or 'volume', got {kind!r}")
        kind = kind.lower()
        if kind == "volume":
            _check_keys(value, ("type", "path"), SOURCE)
            return cls._parse_volume(value.get("path"), volumes)
        _check_keys(value, ("type", "catalog", "table", "metadataLocation", "metadata_location", "path"), SOURCE)
        location = value.get("metadataLocation", value.get("metadata_location"))
        if location is None and isinstance(value.get("path"), str):
            if value["path"].lower().startswith("volume://"):
                return cls._parse_volume(value["path"], volumes)
            location = value["path"]
        has_catalog = "catalog" in value or "table" in value
        if has_catalog and location is not None:
            raise InvalidArgumentError(
                f"{SOURCE}: give either catalog + table or metadataLocation, not both")
        if location is not None:
            if not isinstance(location, str) or not location.strip():
                raise InvalidArgumentError(f"{SOURCE}.metadataLocation: expected a path or URI, got {location!r}")
            return cls(kind="metadata", metadata_location=location.strip())
        if not has_catalog:
            raise InvalidArgumentError(
                f"{SOURCE}: expected catalog + table, metadataLocation, or a volume:// path; got keys {sorted(value)}")
        catalog = value.get("catalog")
        if not isinstance(catalog, dict) or not catalog:
            raise InvalidArgumentError(
                f"{SOURCE}.catalog: expected an object of pyiceberg catalog properties such as "
                f'{{"type": "sql", "name": "lake", "uri": "sqlite:///…", "warehouse": "file:///…"}}, got {catalog!r}')
        props: dict[str, str] = {}
        for k, v in catalog.items():
            if not isinstance(k, str) or not k:
                raise InvalidArgumentError(f"{SOURCE}.catalog: expected string keys, got {k!r}")
            if isinstance(v, bool):
                v = "true" if v else "false"
            if not isinstance(v, (str, int, float)):
                raise InvalidArgumentError(f"{SOURCE}.catalog.{k}: expected a string, got {type(v).__name__}")
            props[k] = str(v)
        table = value.get("table")
        if isinstance(table, str):
            parts = tuple(table.split("."))
        elif isinstance(table, (list, tuple)):
            parts = tuple(table)
        else:
            raise InvalidArgumentError(f"{SOURCE}.table: expected 'namespace.table' or a list of names, got {table!r}")
        if len(parts) < 2 or not all(isinstance(p, str) and p for p in parts):
            raise InvalidArgumentError(f"{SOURCE}.table: expected 'namespace.table' (at least two parts), got {table!r}")
        return cls(kind="catalog", catalog=props, table=parts)

    @classmethod
    def _parse_volume(cls, path: Any, volumes: dict | None) -> "ExternalSource":
        if not isinstance(path, str) or not path.lower().startswith("volume://"):
            raise InvalidArgumentError(f"{SOURCE}.path: expected 'volume://NAME/path/to/table', got {path!r}")
        rest = path[len("volume://"):]
        name, _, sub = rest.partition("/")
        sub = sub.strip("/")
        if not name:
            raise InvalidArgumentError(f"{SOURCE}.path: missing volume name in {path!r}")
        parts = [p for p in sub.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise InvalidArgumentError(f"{SOURCE}.path: '.' and '..' are not allowed in a volume path, got {path!r}")
        if not volumes or name not in volumes:
            known = ", ".join(sorted(volumes)) if volumes else "none"
            raise InvalidArgumentError(
                f"{SOURCE}.path: volume {name!r} is not mapped to a local folder (volumes configured: {known})")
        root = Path(os.fspath(volumes[name]))
        local = root.joinpath(*parts) if parts else root
        return cls(kind="volume", volume=name, volume_path=sub, local_path=str(local))

    def to_json(self, *, redact_secrets: bool = False) -> dict:
        """The canonical JSON form (round-trips through :meth:`parse`). A volume source is stored
        by its URL, not its local folder, so remapping a volume needs no migration."""
        if self.kind == "catalog":
            cat = dict(self.catalog or {})
            out = {"type": "iceberg", "catalog": redact(cat) if redact_secrets else cat, "table": ".".join(self.table or ())}
            return out
        if self.kind == "metadata":
            return {"type": "iceberg", "metadataLocation": self.metadata_location}
        return {"type": "volume", "path": f"volume://{self.volume}/{self.volume_path}".rstrip("/")}

    def describe(self) -> str:
        if self.kind == "catalog":
            return f"table {'.'.join(self.table or ())!r} in catalog {self.catalog.get('name', 'default')!r}"  # type: ignore[union-attr]
        if self.kind == "metadata":
            return f"metadata {self.metadata_location!r}"
        return f"volume://{self.volume}/{self.volume_path} ({self.local_path})"

    def load_table(self) -> "Table":
        """A fresh, read-only view of the table (new metadata every call: a refresh must see the
        latest commit, and ``StaticTable.refresh()`` is not implemented in pyiceberg 0.12).

        Raises :class:`NotFoundError` for a missing catalog file, namespace, table, metadata
        file or folder, and :class:`InvalidArgumentError` for unusable catalog properties.
        """
        if self.kind == "catalog":
            return self._load_from_catalog()
        if self.kind == "metadata":
            return self._load_static(self.metadata_location or "")
        local = Path(self.local_path or "")
        if not local.exists():
            raise NotFoundError(f"{SOURCE}: {self.describe()} does not exist")
        target = local if local.name.endswith(".metadata.json") else _newest_metadata_file(local)
        return self._load_static(str(target))

    def _load_static(self, location: str) -> "Table":
        from pyiceberg.table import StaticTable

        local = _local_path(location)
        if local is not None:
            if local.is_dir():
                location = str(_newest_metadata_file(local))
            elif not local.is_file():
                raise NotFoundError(f"{SOURCE}: metadata file {location!r} does not exist")
        elif not location.endswith(".metadata.json"):
            raise InvalidArgumentError(
                f"{SOURCE}.metadataLocation: a remote location must name a *.metadata.json file, got {location!r}")
        try:
            return StaticTable.from_metadata(location)
        except FileNotFoundError as e:
            raise NotFoundError(f"{SOURCE}: metadata file {location!r} not found ({e})") from None
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            raise InvalidArgumentError(
                f"{SOURCE}: {location!r} is not a readable Iceberg metadata file ({type(e).__name__}: {e})") from None

    def _load_from_catalog(self) -> "Table":
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        props = dict(self.catalog or {})
        name = props.pop("name", "default")
        ctype = props.get("type", "").lower()
        if ctype == "sql":
            uri = props.get("uri")
            if not uri:
                raise InvalidArgumentError(f"{SOURCE}.catalog.uri: required for a sql catalog (e.g. 'sqlite:////data/lake/catalog.db')")
            if uri.startswith("sqlite:///"):
                db_file = Path(uri[len("sqlite:///"):])
                if not db_file.is_file():
                    raise NotFoundError(f"{SOURCE}.catalog.uri: sqlite catalog file {str(db_file)!r} does not exist")
            props.setdefault("init_catalog_tables", "false")  # a read-only source must never create a catalog
        try:
            catalog = load_catalog(name, **props)
        except (ValueError, NotImplementedError, ImportError, TypeError) as e:
            raise InvalidArgumentError(f"{SOURCE}.catalog: cannot open catalog {name!r}: {type(e).__name__}: {e}") from None
        except Exception as e:  # driver errors (sqlalchemy, network) surface with their type
            raise NotFoundError(f"{SOURCE}.catalog: cannot open catalog {name!r}: {type(e).__name__}: {e}") from None
        try:
            return catalog.load_table(self.table)  # type: ignore[arg-type]
        except (NoSuchTableError, NoSuchNamespaceError) as e:
            hint = (" (a sql catalog keys tables by catalog name: is catalog.name the name the writer used?)"
                    if ctype == "sql" else "")
            raise NotFoundError(f"{SOURCE}: table {'.'.join(self.table or ())!r} not found in catalog {name!r}{hint}: {e}") from None
        except VecstoreError:
            raise
        except Exception as e:
            raise NotFoundError(
                f"{SOURCE}: cannot load table {'.'.join(self.table or ())!r} from catalog {name!r}: {type(e).__name__}: {e}") from None



def snapshot_schema(table: "Table", snapshot_id: int | None = None) -> "Schema":
    """The schema a snapshot was written with (the current schema when ``snapshot_id`` is None
    or the snapshot records no schema id)."""
    if snapshot_id is not None:
        snap = table.metadata.snapshot_by_id(snapshot_id)
        if snap is None:
            raise NotFoundError(f"{SPEC}.snapshotId: snapshot {snapshot_id} not found in the table (expired?)")
        if snap.schema_id is not None:
            for s in table.metadata.schemas:
                if s.schema_id == snap.schema_id:
                    return s
    return table.schema()


def read_schema(table: Table, snapshot_id: int | None = None) -> Schema:
    """The schema to read a snapshot's files with: :func:`snapshot_schema`, plus the top-level
    columns of the current schema that it lacks, as optional columns. An ``ADD COLUMN`` commits
    a schema but no snapshot, and the mapping is bound to the current schema: such a column
    reads as null, as in pyiceberg's scan of the current table (Iceberg matches columns by
    field id, so files without it give nulls). A column in neither schema stays missing."""
    from pyiceberg import schema as iceberg_schema

    schema = snapshot_schema(table, snapshot_id)
    current = table.schema()
    have = {f.field_id for f in schema.fields}
    added = [f for f in current.fields if f.field_id not in have]
    if not added:
        return schema
    names = {f.name for f in schema.fields}
    # a name the snapshot's schema still uses (a column dropped, then added again as a new
    # field) gets a suffix: names only label the read's batch columns, ids do the matching
    extra = [f.model_copy(update={"required": False, "name": f.name if f.name not in names else f"{f.name}#{f.field_id}"})
             for f in added]
    return iceberg_schema.Schema(*schema.fields, *extra, schema_id=schema.schema_id, identifier_field_ids=schema.identifier_field_ids)
