"""How an external table's columns become rows: ``externalSpec``, binding and conversion.

:class:`ExternalSpec` parses ``externalSpec`` (primary key, vector column(s), scalar fields,
full-text fields, snapshot pin); :meth:`ExternalSpec.bind` resolves it against the table schema
into a :class:`BoundSpec` holding Iceberg **field ids**, so a later column rename at the source
is harmless. :meth:`BoundSpec.convert` turns a record batch into ids, a float32 ``(n, dim)``
matrix and JSON-like field dicts, validating as it goes. See the package docstring.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import hashlib
import json
import math
import re
import uuid as _uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DimensionMismatchError, InvalidArgumentError, NotFoundError
from ..indexes.base import parse_index_mode, parse_metric
from .plan import ChangePlan, read_files
from .source import (
    SPEC,
    _check_keys,
    _load_json,
    _sample,
    read_schema,
    redact,
    snapshot_schema,
)

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema
    from pyiceberg.table import FileScanTask, Table

__all__ = ["ExternalSpec", "VectorSpec", "FieldSpec", "BoundSpec", "BoundColumn", "BoundVector", "ConvertedRows"]


# --------------------------------------------------------------------------------------------
# externalSpec
# --------------------------------------------------------------------------------------------

_ENCODINGS = {
    "auto": "auto",
    "list": "list", "list<float>": "list", "list<double>": "list", "float_list": "list",
    "fixed": "fixed_f32le", "fixed_f32le": "fixed_f32le", "fixed[4*dim]": "fixed_f32le", "f32le": "fixed_f32le",
    "binary": "binary_f32le", "binary_f32le": "binary_f32le",
}
_VECTOR_TYPES = ("float_vector", "vector", "floatvector")
# vecstore field type -> accepted Iceberg type families (a light check; conversion is by Iceberg type)
_FIELD_TYPES = {
    "int64": {"int", "long"}, "int32": {"int"}, "int": {"int", "long"}, "integer": {"int", "long"},
    "int16": {"int"}, "int8": {"int"},
    "float": {"float", "double", "decimal"}, "double": {"float", "double", "decimal"},
    "number": {"int", "long", "float", "double", "decimal"},
    "varchar": {"string", "uuid"}, "string": {"string", "uuid"}, "text": {"string"},
    "bool": {"boolean"}, "boolean": {"boolean"},
    "date": {"date"}, "timestamp": {"timestamp", "timestamptz", "timestamp_ns", "timestamptz_ns"},
    "time": {"time"}, "json": {"list", "struct", "map", "string"}, "array": {"list"},
    "binary": {"binary", "fixed"},
}
_SPEC_KEYS = (
    "format", "snapshotId", "snapshot_id", "primaryKey", "primary_key", "fields", "vector", "vectors",
    "vectorField", "vector_field", "index", "fullText", "full_text", "textFields", "rowFilter", "row_filter",
    "onNullVector", "onDuplicatePk", "allowEmpty", "skipUnchanged", "batchRows", "binary", "extfs",
)


@dataclass(frozen=True)
class VectorSpec:
    """One vector field: vecstore ``name`` (``"default"`` for the primary vector), source
    ``column``, ``dim`` (None: detected at bind), ``metric``, index ``kind`` (FLAT/HNSW/IVF),
    ``encoding`` (auto | list | fixed_f32le | binary_f32le) and index ``params`` (M, efConstruction…)."""

    name: str
    column: str
    dim: int | None = None
    metric: str = "cosine"
    index: str = "HNSW"
    encoding: str = "auto"
    params: dict = field(default_factory=dict, compare=False)

    @property
    def index_mode(self) -> str:
        """The wire name, e.g. ``HNSW-COS``."""
        return parse_index_mode(self.index, default_metric=self.metric).canonical

    def to_json(self) -> dict:
        return {"name": self.name, "externalField": self.column, "dim": self.dim, "metric": self.metric,
                "index": self.index, "encoding": self.encoding, "params": dict(self.params)}


@dataclass(frozen=True)
class FieldSpec:
    """A scalar field: vecstore ``name`` from source ``column``; ``type`` is an optional check."""

    name: str
    column: str
    type: str | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "externalField": self.column, "type": self.type}


def _str(v: Any, param: str) -> str:
    if not isinstance(v, str) or not v:
        raise InvalidArgumentError(f"{param}: expected a non-empty string, got {v!r}")
    return v


def _int_or_none(v: Any, param: str, *, positive: bool = True) -> int | None:
    if v is None or v == "":
        return None
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):  # Milvus sends snapshot_id as a string
        v = int(v.strip())
    if isinstance(v, bool) or not isinstance(v, int) or (positive and v < 1):
        raise InvalidArgumentError(f"{param}: expected {'a positive ' if positive else 'an '}integer, got {v!r}")
    return v


def _choice(v: Any, choices: tuple[str, ...], param: str) -> str:
    if not isinstance(v, str) or v.lower() not in choices:
        raise InvalidArgumentError(f"{param}: expected one of {', '.join(choices)}, got {v!r}")
    return v.lower()


def _parse_vector(name: str, v: Any, param: str, defaults: dict) -> VectorSpec:
    if isinstance(v, str):
        v = {"externalField": v}
    if not isinstance(v, dict):
        raise InvalidArgumentError(f"{param}: expected a column name or an object with externalField, dim, metric, got {v!r}")
    _check_keys(v, ("name", "externalField", "column", "dim", "metric", "index", "indexMode", "index_mode",
                    "encoding", "type", "params", "M", "efConstruction", "nullable"), param)
    column = _str(v.get("externalField", v.get("column", name)), f"{param}.externalField")
    dim = _int_or_none(v.get("dim"), f"{param}.dim")
    index_val = v.get("index", v.get("indexMode", v.get("index_mode", defaults.get("index", "HNSW"))))
    params = dict(defaults.get("params", {}))
    if isinstance(index_val, dict):  # §5.2.3 style {"metric":…, "type":…, "M":…}
        idx = dict(index_val)
        if "metric" in idx:
            v = {**v, "metric": v.get("metric", idx.pop("metric"))}
        index_val = idx.pop("type", idx.pop("mode", idx.pop("kind", "HNSW")))
        params.update(idx)
    for k in ("M", "efConstruction"):
        if k in v:
            params[k] = v[k]
    if isinstance(v.get("params"), dict):
        params.update(v["params"])
    metric = parse_metric(v.get("metric", defaults.get("metric", "cosine")), param=f"{param}.metric")
    mode = parse_index_mode(index_val, default_metric=metric, param=f"{param}.index")
    metric = mode.metric
    enc_raw = v.get("encoding", "auto")
    enc = _ENCODINGS.get(enc_raw.lower() if isinstance(enc_raw, str) else None)  # type: ignore[arg-type]
    if enc is None:
        raise InvalidArgumentError(
            f"{param}.encoding: expected auto, list (list<float|double>) or fixed_f32le (fixed[4*dim]), got {enc_raw!r}")
    for k, pv in params.items():
        if isinstance(pv, bool) or not isinstance(pv, (int, float, str)):
            raise InvalidArgumentError(f"{param}.params.{k}: expected a number or string, got {pv!r}")
    return VectorSpec(name=name, column=column, dim=dim, metric=metric, index=mode.kind, encoding=enc, params=params)


@dataclass(frozen=True)
class ExternalSpec:
    """A parsed ``externalSpec``: how the Iceberg columns map to vecstore rows.

    Canonical form (``to_json()``)::

        {"format": "iceberg-table", "snapshotId": null, "primaryKey": "book_id",
         "vectors": [{"name": "default", "externalField": "vec", "dim": 768, "metric": "cosine",
                      "index": "HNSW", "encoding": "auto", "params": {"M": 16}}],
         "fields": [{"name": "title", "externalField": "title", "type": "varchar"}] | null,
         "fullText": ["title"], "rowFilter": null, "onNullVector": "error",
         "onDuplicatePk": "error", "allowEmpty": false, "skipUnchanged": true,
         "batchRows": 65536, "binary": "skip"}

    Also accepted: the ``refresh.md`` §5.2.3 shape (``float_vector`` entries inside ``fields`` plus
    ``vectorField`` and ``index``), a compact ``"vector": "vec"`` or ``{"externalField": …}``,
    ``"vectors": {name: …}``, ``"fields": ["a", "b"]`` or ``{"name": "column"}``, and Milvus'
    ``snapshot_id`` (string or int). ``fields: null`` (the default) maps every other top-level
    column at bind time, but a column named ``id`` (the row's id in reads and filters: map it
    under another name) and columns of types it cannot map; those are listed in ``skippedColumns``. ``primaryKey`` names a source column, or a field ``name`` whose
    ``externalField`` is the column; it is required (no virtual primary key here).
    """

    primary_key: str
    vectors: tuple[VectorSpec, ...]
    fields: tuple[FieldSpec, ...] | None = None
    full_text: tuple[str, ...] = ()
    snapshot_id: int | None = None
    row_filter: str | None = None
    on_null_vector: str = "error"
    on_duplicate_pk: str = "error"
    allow_empty: bool = False
    skip_unchanged: bool = True
    batch_rows: int = 65536
    binary: str = "skip"
    extfs: dict | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, value: str | dict) -> "ExternalSpec":
        """Parse and validate; raises :class:`InvalidArgumentError` naming ``externalSpec.<key>``.

        >>> s = ExternalSpec.parse('{"primaryKey": "id", "vector": {"externalField": "vec", "dim": 4}}')
        >>> (s.primary_key, s.vectors[0].name, s.vectors[0].dim, s.vectors[0].metric)
        ('id', 'default', 4, 'cosine')
        """
        if isinstance(value, ExternalSpec):
            return value
        value = _load_json(value, SPEC)
        if not isinstance(value, dict):
            raise InvalidArgumentError(f"{SPEC}: expected a JSON object, got {type(value).__name__}")
        _check_keys(value, _SPEC_KEYS, SPEC)
        fmt = value.get("format", "iceberg-table")
        if fmt not in ("iceberg-table", "iceberg"):
            raise InvalidArgumentError(f"{SPEC}.format: only 'iceberg-table' is supported, got {fmt!r}")
        index_defaults: dict = {}
        index = value.get("index")
        if index is not None:
            if isinstance(index, str):
                index_defaults["index"] = index
            elif isinstance(index, dict):
                idx = dict(index)
                if "metric" in idx:
                    index_defaults["metric"] = idx.pop("metric")
                index_defaults["index"] = idx.pop("type", idx.pop("mode", idx.pop("kind", "HNSW")))
                index_defaults["params"] = idx
            else:
                raise InvalidArgumentError(f"{SPEC}.index: expected an index mode or an object, got {index!r}")

        # fields: list of names / objects, or {name: column}; float_vector entries are vectors
        raw_fields = value.get("fields")
        field_specs: list[FieldSpec] | None = None
        vector_entries: dict[str, Any] = {}
        if raw_fields is not None:
            if isinstance(raw_fields, dict):
                raw_fields = [{"name": k, "externalField": c} for k, c in raw_fields.items()]
            if not isinstance(raw_fields, list):
                raise InvalidArgumentError(f"{SPEC}.fields: expected a list of column names or objects, got {raw_fields!r}")
            field_specs = []
            for i, f in enumerate(raw_fields):
                p = f"{SPEC}.fields[{i}]"
                if isinstance(f, str):
                    field_specs.append(FieldSpec(name=f, column=f))
                    continue
                if not isinstance(f, dict):
                    raise InvalidArgumentError(f"{p}: expected a column name or an object, got {f!r}")
                ftype = f.get("type")
                if isinstance(ftype, str) and ftype.lower() in _VECTOR_TYPES:
                    vname = _str(f.get("name", f.get("externalField")), f"{p}.name")
                    vector_entries[vname] = {k: v for k, v in f.items() if k not in ("type", "name", "nullable")}
                    continue
                _check_keys(f, ("name", "externalField", "column", "type", "nullable", "maxLength", "max_length"), p)
                name = _str(f.get("name", f.get("externalField", f.get("column"))), f"{p}.name")
                column = _str(f.get("externalField", f.get("column", name)), f"{p}.externalField")
                if ftype is not None and (not isinstance(ftype, str) or ftype.lower() not in _FIELD_TYPES):
                    raise InvalidArgumentError(
                        f"{p}.type: expected one of {', '.join(sorted(_FIELD_TYPES))} or float_vector, got {ftype!r}")
                field_specs.append(FieldSpec(name=name, column=column, type=ftype.lower() if ftype else None))

        vectors: list[VectorSpec] = []
        default_name = value.get("vectorField", value.get("vector_field"))
        if "vector" in value:
            vectors.append(_parse_vector("default", value["vector"], f"{SPEC}.vector", index_defaults))
        raw_vectors = value.get("vectors")
        if raw_vectors is not None:
            if isinstance(raw_vectors, list):
                items = []
                for i, v in enumerate(raw_vectors):
                    if not isinstance(v, dict) or not isinstance(v.get("name"), str):
                        raise InvalidArgumentError(f"{SPEC}.vectors[{i}]: expected an object with a name, got {v!r}")
                    items.append((v["name"], {k: x for k, x in v.items() if k != "name"}))
            elif isinstance(raw_vectors, dict):
                items = list(raw_vectors.items())
            else:
                raise InvalidArgumentError(f"{SPEC}.vectors: expected an object {{name: vector}} or a list, got {raw_vectors!r}")
            for name, v in items:
                vname = "default" if name == default_name else name
                vectors.append(_parse_vector(vname, v, f"{SPEC}.vectors.{name}", index_defaults))
        for name, v in vector_entries.items():
            vname = "default" if (name == default_name or (default_name is None and len(vector_entries) == 1
                                                             and not vectors)) else name
            if "externalField" not in v and "column" not in v:
                v = {**v, "externalField": name}
            vectors.append(_parse_vector(vname, v, f"{SPEC}.fields[{name}]", index_defaults))
        if not vectors:
            raise InvalidArgumentError(
                f"{SPEC}: no vector column; give \"vector\": \"<column>\" (or a float_vector entry in fields)")
        if default_name is not None and not any(v.name == "default" for v in vectors):
            raise InvalidArgumentError(f"{SPEC}.vectorField: {default_name!r} is not a vector field of this spec")
        if not any(v.name == "default" for v in vectors):
            if len(vectors) == 1:
                vectors[0] = dataclasses.replace(vectors[0], name="default")
            else:
                raise InvalidArgumentError(f"{SPEC}.vectorField: several vectors ({', '.join(v.name for v in vectors)}); "
                                           "name the default one with vectorField")
        names = [v.name for v in vectors]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"{SPEC}.vectors: duplicate vector field names {_sample(names)}")
        vectors.sort(key=lambda v: (v.name != "default", v.name))

        pk = value.get("primaryKey", value.get("primary_key"))
        if pk is None:
            raise InvalidArgumentError(f"{SPEC}.primaryKey: required (the source column holding each row's id)")
        pk = _str(pk, f"{SPEC}.primaryKey")
        if field_specs is not None:
            mapped = [f for f in field_specs if f.name == pk]
            if mapped:  # §5.2.3: primaryKey names a vecstore field whose externalField is the column
                pk = mapped[0].column
                field_specs = [f for f in field_specs if f.name != mapped[0].name]
            names = [f.name for f in field_specs]
            if "id" in names:
                raise InvalidArgumentError(f"{SPEC}.fields: a field may not be named 'id' (the row's id in reads and "
                                           "filters); map the column under another name, e.g. {\"source_id\": \"id\"}")
            if len(set(names)) != len(names):
                raise InvalidArgumentError(f"{SPEC}.fields: duplicate field names {_sample(sorted(n for n in names if names.count(n) > 1))}")

        full_text = value.get("fullText", value.get("full_text", value.get("textFields", [])))
        if isinstance(full_text, str):
            full_text = [full_text]
        if not isinstance(full_text, list) or not all(isinstance(x, str) and x for x in full_text):
            raise InvalidArgumentError(f"{SPEC}.fullText: expected a list of field names, got {full_text!r}")
        if field_specs is not None:
            unknown = [t for t in full_text if t not in {f.name for f in field_specs}]
            if unknown:
                raise InvalidArgumentError(f"{SPEC}.fullText: {_sample(unknown)} not among the mapped fields")
        row_filter = value.get("rowFilter", value.get("row_filter"))
        if row_filter is not None:
            row_filter = _str(row_filter, f"{SPEC}.rowFilter")
            try:
                from pyiceberg.expressions.parser import parse as _parse_filter

                _parse_filter(row_filter)
            except Exception as e:
                raise InvalidArgumentError(f"{SPEC}.rowFilter: cannot parse {row_filter!r}: {e}") from None
        for key in ("allowEmpty", "skipUnchanged"):
            if key in value and not isinstance(value[key], bool):
                raise InvalidArgumentError(f"{SPEC}.{key}: expected true or false, got {value[key]!r}")
        extfs = value.get("extfs")
        if extfs is not None and not isinstance(extfs, dict):
            raise InvalidArgumentError(f"{SPEC}.extfs: expected an object, got {extfs!r}")
        return cls(
            primary_key=pk,
            vectors=tuple(vectors),
            fields=tuple(field_specs) if field_specs is not None else None,
            full_text=tuple(full_text),
            snapshot_id=_int_or_none(value.get("snapshotId", value.get("snapshot_id")), f"{SPEC}.snapshotId",
                                     positive=False),
            row_filter=row_filter,
            on_null_vector=_choice(value.get("onNullVector", "error"), ("error", "skip"), f"{SPEC}.onNullVector"),
            on_duplicate_pk=_choice(value.get("onDuplicatePk", "error"), ("error", "last_wins"), f"{SPEC}.onDuplicatePk"),
            allow_empty=value.get("allowEmpty", False),
            skip_unchanged=value.get("skipUnchanged", True),
            batch_rows=_int_or_none(value.get("batchRows", 65536), f"{SPEC}.batchRows") or 65536,
            binary=_choice(value.get("binary", "skip"), ("skip", "base64"), f"{SPEC}.binary"),
            extfs=extfs,
        )

    @property
    def vector(self) -> VectorSpec:
        """The default vector field."""
        return self.vectors[0]

    def to_json(self, *, redact_secrets: bool = False) -> dict:
        out = {
            "format": "iceberg-table",
            "snapshotId": self.snapshot_id,
            "primaryKey": self.primary_key,
            "vectors": [v.to_json() for v in self.vectors],
            "fields": [f.to_json() for f in self.fields] if self.fields is not None else None,
            "fullText": list(self.full_text),
            "rowFilter": self.row_filter,
            "onNullVector": self.on_null_vector,
            "onDuplicatePk": self.on_duplicate_pk,
            "allowEmpty": self.allow_empty,
            "skipUnchanged": self.skip_unchanged,
            "batchRows": self.batch_rows,
            "binary": self.binary,
        }
        if self.extfs is not None:
            out["extfs"] = redact(self.extfs) if redact_secrets else dict(self.extfs)
        return out

    def bind(self, source: "Schema | Table", *, snapshot_id: int | None = None) -> "BoundSpec":
        """Resolve column names to Iceberg field ids and check types.

        ``source`` is a pyiceberg ``Schema`` or a ``Table``. With a table, the schema of
        ``snapshot_id`` (default: the spec's pin, else current) is used, and a ``list<float>``
        vector without ``dim`` gets its dimension from the first non-null value in the data.
        Raises :class:`InvalidArgumentError` naming the missing column or the wrong type.
        """
        from pyiceberg.table import Table as _Table

        table = source if isinstance(source, _Table) else None
        if table is not None:
            sid = snapshot_id if snapshot_id is not None else self.snapshot_id
            if sid is not None and table.metadata.snapshot_by_id(sid) is None:
                raise NotFoundError(f"{SPEC}.snapshotId: snapshot {sid} not found in the table (expired?)")
            schema = snapshot_schema(table, sid)
        else:
            schema = source
        top = {f.name: f for f in schema.fields}

        def find(column: str, what: str):
            f = top.get(column)
            if f is None:
                raise InvalidArgumentError(
                    f"{SPEC}: {what} column {column!r} does not exist in the source table; "
                    f"columns: {', '.join(top) or 'none'}")
            return f

        pk_f = find(self.primary_key, "primaryKey")
        pk_kind = _family(pk_f.field_type)
        if pk_kind not in ("int", "long", "string", "uuid"):
            raise InvalidArgumentError(
                f"{SPEC}.primaryKey: column {pk_f.name!r} has type {pk_f.field_type}; expected int, long, string or uuid")
        pk = BoundColumn(name=pk_f.name, field_id=pk_f.field_id, column=pk_f.name, iceberg_type=str(pk_f.field_type),
                         conv="uuid" if pk_kind == "uuid" else "plain")

        vectors = []
        for v in self.vectors:
            vf = find(v.column, f"vector field {v.name!r}:")
            encoding, dim = _vector_encoding(vf, v)
            if dim is None:
                dim = _detect_dim(table, vf.name, snapshot_id if snapshot_id is not None else self.snapshot_id) \
                    if table is not None else None
                if dim is None:
                    raise InvalidArgumentError(
                        f"{SPEC}.vectors.{v.name}.dim: required for list column {vf.name!r} "
                        f"(it could not be detected: bind against a table with at least one non-null vector)")
            vectors.append(BoundVector(name=v.name, field_id=vf.field_id, column=vf.name, iceberg_type=str(vf.field_type),
                                       encoding=encoding, dim=dim, metric=v.metric, index=v.index, params=dict(v.params)))
        used = {pk.field_id} | {v.field_id for v in vectors}

        fields: list[BoundColumn] = []
        skipped: list[str] = []
        if self.fields is None:
            for f in schema.fields:
                if f.field_id in used:
                    continue
                conv = _conversion(f.field_type)
                # "id" names the row's id in reads and filters: a field of that name is refused
                if conv == "unsupported" or (conv == "binary" and self.binary == "skip") or f.name == "id":
                    skipped.append(f.name)
                    continue
                fields.append(BoundColumn(name=f.name, field_id=f.field_id, column=f.name,
                                          iceberg_type=str(f.field_type), conv=conv))
        else:
            for fs in self.fields:
                f = find(fs.column, f"field {fs.name!r}:")
                fam = _family(f.field_type)
                if fs.type is not None and fam not in _FIELD_TYPES[fs.type]:
                    raise InvalidArgumentError(
                        f"{SPEC}.fields: field {fs.name!r} is declared {fs.type} but column {f.name!r} has type {f.field_type}")
                conv = _conversion(f.field_type)
                if conv == "unsupported":
                    raise InvalidArgumentError(
                        f"{SPEC}.fields: field {fs.name!r} (column {f.name!r}) has type {f.field_type}, "
                        f"which vecstore cannot map to a JSON value")
                if conv == "binary" and self.binary == "skip":
                    raise InvalidArgumentError(
                        f"{SPEC}.fields: field {fs.name!r} (column {f.name!r}) is {f.field_type}; "
                        f"set \"binary\": \"base64\" to map binary columns")
                fields.append(BoundColumn(name=fs.name, field_id=f.field_id, column=f.name,
                                          iceberg_type=str(f.field_type), conv=conv))
        by_name = {f.name: f for f in fields}
        for t in self.full_text:
            f = by_name.get(t)
            if f is None:
                raise InvalidArgumentError(f"{SPEC}.fullText: {t!r} is not a mapped field")
            if f.conv != "plain" or _family(f.iceberg_type) != "string":
                raise InvalidArgumentError(f"{SPEC}.fullText: field {t!r} has type {f.iceberg_type}; expected string")
        return BoundSpec(spec=self, primary_key=pk, vectors=tuple(vectors), fields=tuple(fields),
                         full_text=tuple(self.full_text), skipped_columns=tuple(skipped),
                         table_uuid=str(table.metadata.table_uuid) if table is not None else None,
                         schema_id=schema.schema_id,
                         filter_fields=_filter_fields(self.row_filter, schema) if self.row_filter else ())


def _map_filter(expr: "BooleanExpression", rename: Callable[[str], str]) -> "BooleanExpression":
    """An unbound filter expression rebuilt with every column name ``n`` replaced by
    ``rename(n)`` (pyiceberg expressions are immutable models)."""
    from pyiceberg.expressions import (AlwaysFalse, AlwaysTrue, And, LiteralPredicate, Not, Or, Reference,
                                       SetPredicate, UnaryPredicate)

    def walk(e: Any) -> Any:
        if isinstance(e, And):
            return And(walk(e.left), walk(e.right))
        if isinstance(e, Or):
            return Or(walk(e.left), walk(e.right))
        if isinstance(e, Not):
            return Not(walk(e.child))
        if isinstance(e, (AlwaysTrue, AlwaysFalse)):
            return e
        if isinstance(e, LiteralPredicate):
            return type(e)(Reference(rename(e.term.name)), e.literal)
        if isinstance(e, SetPredicate):
            return type(e)(Reference(rename(e.term.name)), e.literals)
        if isinstance(e, UnaryPredicate):
            return type(e)(Reference(rename(e.term.name)))
        raise InvalidArgumentError(f"{SPEC}.rowFilter: unsupported expression {e!r}")
    return walk(expr)


def _filter_fields(text: str, schema: "Schema") -> tuple[tuple[str, int], ...]:
    """The columns ``rowFilter`` names, each with its Iceberg field id in ``schema``, after
    checking that the filter applies to that schema (its columns exist, its literals fit their
    types): it is bound once here, then renamed by field id at every read."""
    from pyiceberg.expressions.parser import parse as _parse_filter
    from pyiceberg.expressions.visitors import bind

    expr = _parse_filter(text)
    names: dict[str, None] = {}  # in order of appearance, each once

    def note(name: str) -> str:
        names[name] = None
        return name
    _map_filter(expr, note)
    out = []
    for name in names:
        try:
            out.append((name, schema.find_field(name).field_id))
        except ValueError:
            raise InvalidArgumentError(
                f"{SPEC}.rowFilter: {text!r} names column {name!r}, which does not exist in the source table; "
                f"columns: {', '.join(f.name for f in schema.fields)}") from None
    try:
        bind(schema, expr, case_sensitive=True)
    except (ValueError, TypeError) as e:
        raise InvalidArgumentError(f"{SPEC}.rowFilter: {text!r} does not apply to the source table: {e}") from None
    return tuple(out)


def _family(t: Any) -> str:
    """A short family name of an Iceberg type (from its string form, which is also what
    ``BoundSpec.to_json`` stores): int, long, float, double, decimal, string, uuid, boolean,
    date, time, timestamp, timestamptz (``_ns`` variants folded in), binary, fixed, list,
    struct, map, or the type's own name (unknown, variant, geometry...)."""
    text = str(t).strip().lower()
    if text.startswith("timestamp"):
        return "timestamptz" if "tz" in text else "timestamp"
    return re.split(r"[\[<(]", text, maxsplit=1)[0].strip()


def _conversion(t: Any) -> str:
    fam = _family(t)
    if fam in ("int", "long", "string", "boolean"):
        return "plain"
    if fam in ("float", "double"):
        return "float"
    if fam == "decimal":
        return "decimal"
    if fam in ("date", "time", "timestamp", "timestamptz"):
        return "temporal"
    if fam in ("binary", "fixed"):
        return "binary"
    if fam == "uuid":
        return "uuid"
    if fam in ("list", "struct", "map"):
        return "nested"
    return "unsupported"  # unknown, variant, geometry, geography: no JSON form here


def _vector_encoding(f: Any, v: VectorSpec) -> tuple[str, int | None]:
    from pyiceberg import types as it

    t = f.field_type
    where = f"{SPEC}.vectors.{v.name}: column {f.name!r}"
    if isinstance(t, it.ListType):
        if not isinstance(t.element_type, (it.FloatType, it.DoubleType)):
            raise InvalidArgumentError(f"{where} is {t}; a list vector must be list<float> or list<double>")
        if v.encoding not in ("auto", "list"):
            raise InvalidArgumentError(f"{where} is {t} but encoding {v.encoding!r} was asked for")
        return "list", v.dim
    if isinstance(t, it.FixedType):
        if v.encoding not in ("auto", "fixed_f32le"):
            raise InvalidArgumentError(f"{where} is {t} but encoding {v.encoding!r} was asked for")
        width = len(t)
        if width % 4:
            raise InvalidArgumentError(f"{where} is {t}; fixed_f32le needs a width of 4*dim bytes")
        if v.dim is not None and width != 4 * v.dim:
            raise DimensionMismatchError(f"{where} is {t}, which holds dim {width // 4}, but dim {v.dim} was given")
        return "fixed_f32le", width // 4
    if isinstance(t, it.BinaryType):
        if v.encoding not in ("auto", "binary_f32le", "fixed_f32le"):
            raise InvalidArgumentError(f"{where} is {t} but encoding {v.encoding!r} was asked for")
        return "binary_f32le", v.dim
    raise InvalidArgumentError(
        f"{where} has type {t}; expected list<float>, list<double> or fixed[4*dim] (little-endian float32)")


def _detect_dim(table: "Table", column: str, snapshot_id: int | None) -> int | None:
    """Dimension of the first non-null vector, reading one data file's first batch only."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    schema = snapshot_schema(table, snapshot_id)
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        if task.file.record_count == 0:
            continue
        scan = ArrowScan(table.metadata, table.io, schema.select(column), AlwaysTrue())
        for batch in scan.to_record_batches([task]):
            arr = batch.column(0)
            lengths = pc.list_value_length(arr) if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) \
                else pc.binary_length(arr)
            valid = lengths.drop_null()
            if len(valid):
                n = int(valid[0].as_py())
                return n if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) else (n // 4 or None)
    return None


# --------------------------------------------------------------------------------------------
# BoundSpec and conversion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundColumn:
    """A source column bound by Iceberg ``field_id``; ``column`` is its name at bind time,
    ``conv`` how values become JSON-like (plain, float, decimal, temporal, binary, uuid, nested)."""

    name: str
    field_id: int
    column: str
    iceberg_type: str
    conv: str = "plain"

    def to_json(self) -> dict:
        return {"name": self.name, "fieldId": self.field_id, "column": self.column,
                "icebergType": self.iceberg_type, "conv": self.conv}


@dataclass(frozen=True)
class BoundVector:
    name: str
    field_id: int
    column: str
    iceberg_type: str
    encoding: str  # list | fixed_f32le | binary_f32le
    dim: int
    metric: str
    index: str
    params: dict = field(default_factory=dict, compare=False)

    @property
    def index_mode(self) -> str:
        return parse_index_mode(self.index, default_metric=self.metric).canonical

    def to_json(self) -> dict:
        return {"name": self.name, "fieldId": self.field_id, "column": self.column, "icebergType": self.iceberg_type,
                "encoding": self.encoding, "dim": self.dim, "metric": self.metric, "index": self.index,
                "params": dict(self.params)}


@dataclass(frozen=True, eq=False)
class ConvertedRows:
    """One batch ready for a collection: ``ids`` (int or str), ``vectors`` (the default vector
    field, float32 ``(n, dim)``, C-contiguous, writable), ``named_vectors`` (other vector fields),
    ``fields`` (one JSON-like dict per row), ``skipped`` (keys of rows dropped by
    ``onNullVector: skip``) and ``file`` (the source file key, from :meth:`BoundSpec.read`)."""

    ids: list
    vectors: np.ndarray
    fields: list[dict]
    named_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    file: str | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class BoundSpec:
    """An :class:`ExternalSpec` resolved against a schema: columns are held by Iceberg field id,
    vector encodings and dimensions are known. Persist ``to_json()`` with the collection and
    rebuild it with :meth:`from_json`; :meth:`columns_for` gives the *current* column names, so a
    rename at the source needs no re-bind. ``filter_fields`` are the ``(name, field id)`` pairs of
    the columns ``rowFilter`` names (None in records bound before they were kept: by name then);
    :meth:`row_filter_for` renames the filter to the current names the same way."""

    spec: ExternalSpec
    primary_key: BoundColumn
    vectors: tuple[BoundVector, ...]
    fields: tuple[BoundColumn, ...]
    full_text: tuple[str, ...] = ()
    skipped_columns: tuple[str, ...] = ()
    table_uuid: str | None = None
    schema_id: int | None = None
    filter_fields: tuple[tuple[str, int], ...] | None = ()

    @property
    def vector(self) -> BoundVector:
        return self.vectors[0]

    @property
    def mapping_hash(self) -> str:
        """A digest of everything that decides row *content* (field ids, conversions, encodings,
        dims, row filter, null/duplicate policy). Column names (renames), the snapshot pin,
        batch size and index/metric parameters are excluded: compare those separately. A change
        means every file must be re-read (rebuild)."""
        payload = {
            "pk": self.primary_key.field_id,
            "vectors": [(v.name, v.field_id, v.encoding, v.dim) for v in self.vectors],
            "fields": [(f.name, f.field_id, f.conv) for f in self.fields],
            "rowFilter": self.spec.row_filter, "onNullVector": self.spec.on_null_vector,
            "onDuplicatePk": self.spec.on_duplicate_pk, "binary": self.spec.binary,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def to_json(self) -> dict:
        return {
            "version": 1,
            "spec": self.spec.to_json(),
            "primaryKey": self.primary_key.to_json(),
            "vectors": [v.to_json() for v in self.vectors],
            "fields": [f.to_json() for f in self.fields],
            "fullText": list(self.full_text),
            "skippedColumns": list(self.skipped_columns),
            "tableUuid": self.table_uuid,
            "schemaId": self.schema_id,
            "filterFields": [list(x) for x in self.filter_fields] if self.filter_fields is not None else None,
            "mappingHash": self.mapping_hash,
        }

    @classmethod
    def from_json(cls, d: dict | str) -> "BoundSpec":
        if isinstance(d, str):
            d = json.loads(d)
        if not isinstance(d, dict) or d.get("version") != 1:
            raise InvalidArgumentError(f"bound externalSpec: unsupported record {str(d)[:80]!r}")
        return cls(
            spec=ExternalSpec.parse(d["spec"]),
            primary_key=BoundColumn(**_from_camel(d["primaryKey"])),
            vectors=tuple(BoundVector(**_from_camel(v)) for v in d["vectors"]),
            fields=tuple(BoundColumn(**_from_camel(f)) for f in d["fields"]),
            full_text=tuple(d.get("fullText", ())),
            skipped_columns=tuple(d.get("skippedColumns", ())),
            table_uuid=d.get("tableUuid"),
            schema_id=d.get("schemaId"),
            filter_fields=tuple((str(n), int(i)) for n, i in d["filterFields"])
            if d.get("filterFields") is not None else None,
        )

    def _all_columns(self) -> list[BoundColumn | BoundVector]:
        return [self.primary_key, *self.vectors, *self.fields]

    def names_by_id(self, schema: "Schema") -> dict[int, str]:
        """Field id -> current column name for every bound column, checked against ``schema``:
        :class:`InvalidArgumentError` if a column was dropped or retyped beyond Iceberg's allowed
        promotions (int->long, float->double, decimal precision)."""
        top = {f.field_id: f for f in schema.fields}
        out: dict[int, str] = {}
        for c in self._all_columns():
            f = top.get(c.field_id)
            if f is None:
                raise InvalidArgumentError(
                    f"{SPEC}: source column {c.column!r} (field id {c.field_id}, mapped to {c.name!r}) no longer "
                    f"exists in the source table (dropped?); re-create the mapping with a new externalSpec")
            now, was = _family(f.field_type), _family(c.iceberg_type)
            if now != was and (was, now) not in (("int", "long"), ("float", "double")):
                raise InvalidArgumentError(
                    f"{SPEC}: source column {f.name!r} (mapped to {c.name!r}) changed type from {c.iceberg_type} "
                    f"to {f.field_type}")
            if isinstance(c, BoundVector) and str(f.field_type) != c.iceberg_type and now == "fixed":
                raise DimensionMismatchError(
                    f"{SPEC}: vector column {f.name!r} changed from {c.iceberg_type} to {f.field_type}")
            out[c.field_id] = f.name
        return out

    def columns_for(self, schema: "Schema") -> list[str]:
        """The current names of the bound columns in ``schema``: primary key, vectors, fields,
        each once. Renamed columns come back under their new name (binding is by field id)."""
        return list(dict.fromkeys(self.names_by_id(schema).values()))

    def row_filter_for(self, schema: "Schema") -> "BooleanExpression | None":
        """The spec's ``rowFilter`` with its columns renamed to their names in ``schema``, found
        by the field ids recorded at bind (so a rename at the source is harmless); None without
        a filter. Raises :class:`InvalidArgumentError` naming the filter and the column if a
        column it uses was dropped."""
        text = self.spec.row_filter
        if not text:
            return None
        from pyiceberg.expressions.parser import parse as _parse_filter

        expr = _parse_filter(text)
        if self.filter_fields is None:
            return expr
        names: dict[str, str] = {}
        for name, field_id in self.filter_fields:
            now = schema.find_column_name(field_id)
            if now is None:
                raise InvalidArgumentError(
                    f"{SPEC}.rowFilter: {text!r} uses column {name!r} (field id {field_id}), which no longer exists in "
                    f"the source table (dropped?); refresh with an externalSpec whose rowFilter names current columns")
            names[name] = now
        return _map_filter(expr, lambda n: names.get(n, n))

    def read(self, table: "Table", files: "ChangePlan | Sequence[str | FileScanTask]", *,
             snapshot_id: int | None = None, batch_rows: int | None = None,
             seen_keys: set | None = None, keys: "Iterable | None" = None) -> Iterator["ConvertedRows"]:
        """:func:`read_files` + :meth:`convert` for the bound columns, names resolved in the
        snapshot's schema (:func:`~.source.read_schema`: a column added since reads as null); each result carries the ``file`` key it came from. Given a
        :class:`ChangePlan`, reads its added files at its ``to_snapshot``. With ``keys``, only
        the rows holding those primary keys (a key-filtered read)."""
        if isinstance(files, ChangePlan):
            files, snapshot_id = files.added_tasks or files.added_files, files.to_snapshot
        schema = read_schema(table, snapshot_id)
        columns = self.columns_for(schema)
        current = table.schema()  # pyiceberg binds a scan's filter to the current schema
        row_filter = self.row_filter_for(current)
        uuid_keys = None
        if keys is not None and self.primary_key.conv == "uuid":
            # pyarrow has no comparison kernel for its uuid type, so pyiceberg cannot filter on
            # such a column: match the keys' 16 bytes per batch instead
            uuid_keys = pa.array([_uuid.UUID(str(k)).bytes for k in keys], pa.binary(16))
        elif keys is not None:
            from pyiceberg.expressions import And, In

            pk = current.find_column_name(self.primary_key.field_id) or self.primary_key.column
            by_key = In(pk, keys)
            row_filter = by_key if row_filter is None else And(row_filter, by_key)
        pk_column = columns[0]  # columns_for lists the primary key first
        for key, batch in read_files(table, files, columns, snapshot_id=snapshot_id, with_file=True,
                                     batch_rows=batch_rows or self.spec.batch_rows, row_filter=row_filter):
            if uuid_keys is not None:
                arr = batch.column(pk_column)
                batch = batch.filter(pc.is_in(arr.storage if isinstance(arr, pa.ExtensionArray) else arr,
                                              value_set=uuid_keys))
            yield dataclasses.replace(self.convert(batch, schema=schema, seen_keys=seen_keys), file=key)

    def convert(self, batch: pa.RecordBatch | pa.Table, *, schema: "Schema | None" = None,
                seen_keys: set | None = None) -> ConvertedRows:
        """Turn source rows into ids, float32 vectors and JSON-like field dicts.

        Columns are looked up by their names in ``schema`` (default: the names at bind time).
        Checks, each raising with the column and a sample of primary keys: null or invalid
        primary keys (vecstore ids are non-negative ints or non-empty strings of ≤ 400 bytes),
        duplicate keys in the batch (or already in ``seen_keys``, which is updated), null vectors
        (unless ``onNullVector: skip``), wrong dimension, NaN/inf components.

        Field values: ints, strings, bools as they are; floats with NaN/inf become ``None``;
        decimals become floats; dates, times and timestamps ISO-8601 strings (timestamptz with
        ``+00:00``); UUIDs strings; binary skipped (default) or base64 (``binary: base64``);
        lists, structs and maps nested JSON (maps with string keys as dicts).
        """
        lookup = self.names_by_id(schema) if schema is not None else {c.field_id: c.column for c in self._all_columns()}
        if isinstance(batch, pa.Table):
            arrays = {n: batch.column(n).combine_chunks() if batch.column(n).num_chunks != 1 else batch.column(n).chunk(0)
                      for n in batch.column_names}
        else:
            arrays = {n: batch.column(i) for i, n in enumerate(batch.schema.names)}

        def column(c) -> pa.Array:
            n = lookup[c.field_id]
            if n not in arrays:
                raise InvalidArgumentError(
                    f"{SPEC}: column {n!r} (mapped to {c.name!r}) is not in the batch; batch columns: {', '.join(arrays)}")
            return arrays[n]

        pk_col = lookup[self.primary_key.field_id]  # current names in messages
        pk_arr = column(self.primary_key)
        n = len(pk_arr)
        ids = _convert_ids(pk_arr, self.primary_key, pk_col)

        keep = np.ones(n, dtype=bool)
        skipped: list = []
        for v in self.vectors:
            arr = column(v)
            if arr.null_count:
                null_rows = np.flatnonzero(np.asarray(arr.is_null().to_numpy(zero_copy_only=False)))
                if self.spec.on_null_vector == "error":
                    raise InvalidArgumentError(
                        f"{SPEC}: vector column {lookup[v.field_id]!r} (field {v.name!r}) is null in {len(null_rows)} row(s); "
                        f"keys: {_sample([ids[i] for i in null_rows])} (set onNullVector: skip to drop such rows)")
                keep[null_rows] = False
        if not keep.all():
            skipped = [ids[i] for i in np.flatnonzero(~keep)]

        # duplicate primary keys in this batch
        live_ids = ids if keep.all() else [ids[i] for i in np.flatnonzero(keep)]
        if len(set(live_ids)) != len(live_ids):
            if self.spec.on_duplicate_pk == "error":
                seen: set = set()
                dups = sorted({k for k in live_ids if k in seen or seen.add(k)}, key=repr)  # type: ignore[func-returns-value]
                raise InvalidArgumentError(
                    f"{SPEC}: primary key column {pk_col!r} has {len(dups)} duplicated value(s) in one batch: "
                    f"{_sample(dups)} (set onDuplicatePk: last_wins to keep the last)")
            last: dict = {}
            for i in np.flatnonzero(keep):
                last[ids[i]] = i
            keep[:] = False
            keep[list(last.values())] = True
        if seen_keys is not None:
            again = [ids[i] for i in np.flatnonzero(keep) if ids[i] in seen_keys]
            if again:
                raise InvalidArgumentError(
                    f"{SPEC}: primary key column {pk_col!r} repeats {len(again)} key(s) already read from other rows "
                    f"or files: {_sample(again)}")
        sel = None if keep.all() else pa.array(keep)
        if sel is not None:
            ids = [ids[i] for i in np.flatnonzero(keep)]
        if seen_keys is not None:
            seen_keys.update(ids)

        vectors: dict[str, np.ndarray] = {}
        for v in self.vectors:
            arr = column(v)
            if sel is not None:
                arr = arr.filter(sel)
            vectors[v.name] = _convert_vectors(arr, v, ids, lookup[v.field_id])

        field_lists = []
        field_names = []
        for f in self.fields:
            arr = column(f)
            if sel is not None:
                arr = arr.filter(sel)
            field_names.append(f.name)
            field_lists.append(_convert_field(arr, f.conv, self.spec.binary))
        m = len(ids)
        if field_names:
            rows = [dict(zip(field_names, vals)) for vals in zip(*field_lists)]
        else:
            rows = [{} for _ in range(m)]
        default = vectors.pop(self.vectors[0].name)
        return ConvertedRows(ids=ids, vectors=default, fields=rows, named_vectors=vectors, skipped=skipped)


def _from_camel(d: dict) -> dict:
    m = {"fieldId": "field_id", "icebergType": "iceberg_type"}
    return {m.get(k, k): v for k, v in d.items()}


def _convert_ids(arr: pa.Array, pk: BoundColumn, col: str) -> list:
    where = f"{SPEC}: primary key column {col!r}"
    if arr.null_count:
        rows = np.flatnonzero(np.asarray(arr.is_null().to_numpy(zero_copy_only=False)))
        raise InvalidArgumentError(f"{where} is null in {len(rows)} row(s) (row positions in the batch: {_sample(rows.tolist())})")
    if pa.types.is_integer(arr.type):
        if len(arr) and pc.min(arr).as_py() < 0:
            neg = arr.filter(pc.less(arr, 0)).to_pylist()
            raise InvalidArgumentError(f"{where} has negative value(s) {_sample(neg)}; vecstore ids are non-negative")
        return arr.to_pylist()
    if pk.conv == "uuid" or pa.types.is_fixed_size_binary(arr.type) or isinstance(arr.type, pa.ExtensionType):
        return [str(v) if isinstance(v, _uuid.UUID) else str(_uuid.UUID(bytes=v)) for v in arr.to_pylist()]
    ids = arr.to_pylist()
    if not all(ids) or any(len(s.encode("utf-8")) > 400 for s in ids if len(s) > 100):
        bad = [s for s in ids if not s or len(s.encode("utf-8")) > 400]
        raise InvalidArgumentError(f"{where}: ids must be non-empty strings of at most 400 bytes; bad: {_sample([b[:40] for b in bad])}")
    return ids


def _convert_vectors(arr: pa.Array, v: BoundVector, ids: list, column: str) -> np.ndarray:
    n, dim = len(arr), v.dim
    where = f"{SPEC}: vector column {column!r} (field {v.name!r})"
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = pc.list_value_length(arr)
        bad = pc.not_equal(lengths, dim).to_numpy(zero_copy_only=False)
        if bad.any():
            rows = np.flatnonzero(bad)
            got = sorted({int(x) for x in lengths.filter(pa.array(bad)).to_numpy(zero_copy_only=False)})
            raise DimensionMismatchError(
                f"{where}: expected dimension {dim}, got {_sample(got)} in {len(rows)} row(s); keys: {_sample([ids[i] for i in rows])}")
        values = arr.flatten()
        out = values.to_numpy(zero_copy_only=False)
        if len(out) != n * dim:  # cannot happen after the length check; guard the reshape anyway
            raise DimensionMismatchError(f"{where}: expected {n * dim} values, got {len(out)}")
        out = out.reshape(n, dim)
        if values.null_count:
            bad_rows = np.flatnonzero(np.isnan(out).any(axis=1))
            raise InvalidArgumentError(
                f"{where}: null components in {len(bad_rows)} row(s); keys: {_sample([ids[i] for i in bad_rows])}")
    elif pa.types.is_fixed_size_binary(t):
        width = t.byte_width
        if width != 4 * dim:
            raise DimensionMismatchError(f"{where}: fixed[{width}] holds dim {width // 4}, expected {dim}")
        buf = arr.buffers()[1]
        out = np.frombuffer(buf, dtype="<f4", count=n * dim, offset=arr.offset * width).reshape(n, dim) if n \
            else np.empty((0, dim), dtype=np.float32)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        lengths = pc.binary_length(arr).to_numpy(zero_copy_only=False)
        bad = lengths != 4 * dim
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DimensionMismatchError(
                f"{where}: expected {4 * dim} bytes (dim {dim}), got {_sample(sorted({int(x) for x in lengths[rows]}))} "
                f"in {len(rows)} row(s); keys: {_sample([ids[i] for i in rows])}")
        if n:
            off_type = np.int64 if pa.types.is_large_binary(t) else np.int32
            offsets = np.frombuffer(arr.buffers()[1], dtype=off_type, count=n + 1, offset=arr.offset * off_type().itemsize)
            out = np.frombuffer(arr.buffers()[2], dtype="<f4", count=n * dim, offset=int(offsets[0])).reshape(n, dim)
        else:
            out = np.empty((0, dim), dtype=np.float32)
    else:
        raise InvalidArgumentError(f"{where}: unsupported Arrow type {t}")
    out = np.array(out, dtype=np.float32, order="C", copy=True)  # owned, writable, native byte order
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise InvalidArgumentError(
            f"{where}: NaN or infinite components in {len(rows)} row(s); keys: {_sample([ids[i] for i in rows])}")
    return out


def _convert_field(arr: pa.Array, conv: str, binary: str) -> list:
    if conv == "plain":
        return arr.to_pylist()
    if conv == "float":
        finite = pc.is_finite(arr)
        if pc.all(finite).as_py() is False:  # NaN / inf are not JSON: they become null
            arr = pc.if_else(finite, arr, pa.scalar(None, arr.type))
        return arr.to_pylist()
    if conv == "decimal":
        return pc.cast(arr, pa.float64()).to_pylist()
    if conv == "temporal":
        t = arr.type
        if pa.types.is_timestamp(t) and t.unit == "ns":
            arr = pc.cast(arr, pa.timestamp("us", tz=t.tz), safe=False)
        elif pa.types.is_time64(t) and t.unit == "ns":
            arr = pc.cast(arr, pa.time64("us"), safe=False)
        return [None if x is None else x.isoformat() for x in arr.to_pylist()]
    if conv == "binary":
        if binary == "base64":
            return [None if x is None else base64.b64encode(x).decode("ascii") for x in arr.to_pylist()]
        return [None] * len(arr)
    if conv == "uuid":
        return [None if x is None else str(x if isinstance(x, _uuid.UUID) else _uuid.UUID(bytes=x)) for x in arr.to_pylist()]
    return [_jsonify(x, arr.type, binary) for x in arr.to_pylist()]


def _jsonify(x: Any, t: pa.DataType, binary: str) -> Any:
    """A nested value as JSON, shaped by its Arrow type ``t``: the Python value of a map is a
    list of pairs, so an empty map and an empty list look alike. A map with string keys is an
    object, any other map a list of ``[key, value]`` pairs; lists and structs recurse."""
    if x is None:
        return None
    if pa.types.is_map(t):
        key, item = t.key_type, t.item_type
        if pa.types.is_string(key) or pa.types.is_large_string(key):
            return {k: _jsonify(v, item, binary) for k, v in x}
        return [[_jsonify(k, key, binary), _jsonify(v, item, binary)] for k, v in x]
    if pa.types.is_struct(t):
        return {f.name: _jsonify(x[f.name], f.type, binary) for f in (t.field(i) for i in range(t.num_fields))}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [_jsonify(e, t.value_type, binary) for e in x]
    if isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, decimal.Decimal):
        return float(x)
    if isinstance(x, (_dt.datetime, _dt.date, _dt.time)):
        return x.isoformat()
    if isinstance(x, _uuid.UUID):
        return str(x)
    if isinstance(x, (bytes, bytearray)):
        return base64.b64encode(bytes(x)).decode("ascii") if binary == "base64" else None
    return str(x)
