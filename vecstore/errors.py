"""One exception hierarchy for vecstore.

Every error a caller can see derives from :class:`VecstoreError`. Each class carries the HTTP
status and the stable ``code`` the server puts on the wire, so the server maps errors with one
``except VecstoreError`` and the remote client maps them back to the same classes
(:func:`error_class_for`). Where a builtin fits, the class also derives from it (``KeyError``,
``ValueError``), so ``except ValueError`` keeps working for callers who expect it.

>>> try:
...     raise DimensionMismatchError("vector: expected dimension 4, got 3")
... except ValueError as e:
...     (e.http_status, e.code)
(400, 'dimension_mismatch')
"""

from __future__ import annotations

import errno


class VecstoreError(Exception):
    """Root of every vecstore error."""

    http_status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message

    def __reduce__(self):  # keep subclasses picklable (multiprocessing, jobs)
        return (type(self), (self.message,))


class InvalidArgumentError(VecstoreError, ValueError):
    """A parameter has a value that cannot be used; the message names the parameter."""

    http_status = 400
    code = "invalid_argument"


class DimensionMismatchError(InvalidArgumentError):
    """A vector does not have the dimension of its field."""

    code = "dimension_mismatch"


class InvalidNameError(InvalidArgumentError):
    """A database, collection or field name breaks the naming rule."""

    code = "invalid_name"


class FilterSyntaxError(InvalidArgumentError):
    """A ``where`` expression does not parse; the message names the position and the token."""

    code = "filter_syntax"


class FilterTypeError(InvalidArgumentError):
    """A ``where`` expression compares values of incompatible types (a string with a number)."""

    code = "filter_type"


class QuerySyntaxError(InvalidArgumentError):
    """A text (BM25) query string does not parse."""

    code = "query_syntax"


class NotSupportedError(InvalidArgumentError):
    """The call exists in the library but not here: the remote client's methods for what is
    only done in the process that owns the data folder (defining external collections and
    materialized views). The message names the method and says why."""

    code = "not_supported"


class NotFoundError(VecstoreError, KeyError):
    """A database, collection, field, id or job does not exist."""

    http_status = 404
    code = "not_found"


class AlreadyExistsError(VecstoreError):
    """A database, collection or id that must be new already exists."""

    http_status = 409
    code = "already_exists"


class ConflictError(VecstoreError):
    """The operation conflicts with the current state (a refresh already running, a read-only
    collection written to, a closed handle used)."""

    http_status = 409
    code = "conflict"


class ReadOnlyError(ConflictError):
    """A write was attempted on a read-only collection (external collections, views, read-only
    opens)."""

    code = "read_only"


class ClosedError(ConflictError):
    """A closed Client, Database or Collection handle was used."""

    code = "closed"


class LockedError(ConflictError):
    """Another process holds the write lock of this collection."""

    code = "locked"


class StorageFullError(VecstoreError):
    """The disk is full; nothing already committed was lost."""

    http_status = 507
    code = "storage_full"


class UnavailableError(VecstoreError):
    """Not now: the process is out of file descriptors, or the server holds its maximum of
    connections, or (``--processes``) its primary is unreachable. Nothing was changed; retry
    later (over HTTP the reply carries ``Retry-After``)."""

    http_status = 503
    code = "unavailable"


class CorruptionError(VecstoreError):
    """A file does not have the content vecstore wrote (checksum, truncation, wrong format)."""

    http_status = 500
    code = "corrupt"


class BadBackupError(CorruptionError):
    """A snapshot or export given to a restore or an import is not one, or does not check
    (truncated, damaged, tampered): the input is bad and nothing was created; the store is fine."""

    http_status = 400
    code = "bad_backup"


class UnsupportedFormatError(CorruptionError):
    """A snapshot, export or store was written by an unknown format version."""

    http_status = 400
    code = "unsupported_format"


class PayloadTooLargeError(InvalidArgumentError):
    """A request body is larger than the server accepts."""

    http_status = 413
    code = "payload_too_large"


class UnauthorizedError(VecstoreError):
    """A missing or wrong API key."""

    http_status = 401
    code = "unauthorized"


class ForbiddenPathError(InvalidArgumentError):
    """A server-side path (snapshot, export) resolves outside the allowed folders."""

    http_status = 403
    code = "forbidden_path"


class JobFailedError(VecstoreError):
    """A refresh job ended in the failed state; the message carries its reason."""

    http_status = 500
    code = "job_failed"


class JobCancelledError(JobFailedError):
    """A refresh job was cancelled."""

    code = "job_cancelled"


class TimeoutError_(VecstoreError, TimeoutError):
    """Waiting for something (a job) took longer than allowed."""

    http_status = 408
    code = "timeout"


def _all_subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE = {c.code: c for c in _all_subclasses(VecstoreError)}


def error_class_for(code: str | None, http_status: int = 500) -> type[VecstoreError]:
    """The exception class for a wire ``code`` (used by the remote client).

    >>> error_class_for("not_found").__name__
    'NotFoundError'
    """
    if code in _BY_CODE:
        return _BY_CODE[code]
    for cls in _all_subclasses(VecstoreError):
        if cls.http_status == http_status and cls.__bases__[0] is VecstoreError:
            return cls
    return VecstoreError


def out_of_descriptors(e: BaseException) -> bool:
    """Whether ``e`` or an exception it was raised from is EMFILE/ENFILE: an ``OSError``, or a
    native library's error carrying its text (tantivy's ``ValueError``, hnswlib's
    ``RuntimeError``, an LMDB error). Not damage: the files are fine, the process is full."""
    seen = 0
    x: BaseException | None = e
    while x is not None and seen < 16:
        if isinstance(x, OSError) and x.errno in (errno.EMFILE, errno.ENFILE):
            return True
        if not isinstance(x, VecstoreError) and ("Too many open files" in str(x) or "TooManyOpenFiles" in str(x)):
            return True
        x, seen = x.__cause__ or x.__context__, seen + 1
    return False
