"""Blobs: named byte strings kept in a collection's store (LynseDB HEAD's ``write_blob`` /
``read_blob`` / ``delete_blob``), for what belongs with the vectors but is not a row: a
tokenizer, a model card, a thumbnail sprite.

Blobs live in the collection's LMDB (sub-database ``blobs``), so a write is durable when it
returns, and snapshots, restores, exports and imports carry them. They are not rows: they
have no vector, do not count in ``len``, and writing one does not change the collection's
``version``.

>>> import tempfile, vecstore
>>> col = vecstore.connect(tempfile.mkdtemp()).create_database("app").require_collection("items", dim=4)
>>> col.write_blob("tokenizer.json", b'{"vocab": 30522}')
>>> col.read_blob("tokenizer.json", offset=2, length=5)
b'vocab'
>>> col.list_blobs(), col.delete_blob("tokenizer.json"), col.read_blob("tokenizer.json")
(['tokenizer.json'], True, None)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import validation as v

if TYPE_CHECKING:
    from .collection import Collection

__all__ = ["CollectionBlobs"]


class CollectionBlobs:
    """Mixin of :class:`~vecstore.collection.Collection`: the blob methods."""

    def write_blob(self: "Collection", key: str, data: Any) -> None:
        """Store ``data`` (bytes-like) under ``key`` (a non-empty string of ≤ 511 UTF-8
        bytes), replacing what was there.

        >>> col.write_blob("notes.txt", "hello".encode())  # doctest: +SKIP
        """
        self._check_writable(rows=False)
        key = v.check_blob_key(key)
        data = v.check_bytes(data)
        with self._wlock:
            self._storage.write(lambda t: t.put_blob(key, data))

    def read_blob(self: "Collection", key: str, offset: int = 0, length: int | None = None) -> bytes | None:
        """The bytes of blob ``key`` from ``offset``, at most ``length`` of them (all by
        default); ``None`` when there is no such blob. Like a file read, an offset past the
        end gives ``b""``.

        >>> col.read_blob("notes.txt", offset=1, length=3)  # doctest: +SKIP
        b'ell'
        """
        self._check_open()
        key = v.check_blob_key(key)
        offset = v.check_nonneg_int(offset, param="offset")
        length = v.check_nonneg_int(length, param="length", allow_none=True)
        with self._storage.read() as t:
            data = t.get_blob(key)
        if data is None:
            return None
        return data[offset:] if length is None else data[offset:offset + length]

    def delete_blob(self: "Collection", key: str) -> bool:
        """Remove blob ``key``; ``True`` when it existed.

        >>> col.delete_blob("notes.txt")  # doctest: +SKIP
        True
        """
        self._check_writable(rows=False)
        key = v.check_blob_key(key)
        with self._wlock:
            return self._storage.write(lambda t: t.delete_blob(key))

    def list_blobs(self: "Collection") -> list[str]:
        """The blob keys, sorted by their UTF-8 bytes.

        >>> col.list_blobs()  # doctest: +SKIP
        ['notes.txt', 'tokenizer.json']
        """
        self._check_open()
        with self._storage.read() as t:
            return list(t.iter_blob_keys())
