"""vecstore: an embedded vector store for Python.

Point it at a folder and you have databases of collections: rows with a public id, dense
vectors, optional named and sparse vectors and metadata fields, searchable by exact, HNSW and
IVF k-NN, SQL-style ``where`` filters, BM25 text, sparse and hybrid search. LMDB holds the
truth; every index is derived from it and rebuilt when needed.

>>> import tempfile, vecstore
>>> db = vecstore.connect(tempfile.mkdtemp()).create_database("app")
>>> col = db.require_collection("items", dim=3)
>>> col.add_item([1.0, 0.0, 0.0], id=1, field={"lang": "en"})
1
>>> col.search([1.0, 0.0, 0.0], k=1, where="lang = 'en'").ids
(1,)

``vecstore.connect("http://127.0.0.1:7637")`` gives the same API against
``python -m vecstore.server``.
"""

import logging

from . import functions
from .client import Client, Database, connect
from .collection import Collection
from .errors import (AlreadyExistsError, BadBackupError, ClosedError, ConflictError, CorruptionError,
                     DimensionMismatchError, FilterSyntaxError, FilterTypeError, InvalidArgumentError,
                     ForbiddenPathError, InvalidNameError, JobCancelledError, JobFailedError, LockedError,
                     NotFoundError, NotSupportedError, PayloadTooLargeError, QuerySyntaxError, ReadOnlyError,
                     StorageFullError, TimeoutError_, UnauthorizedError, UnavailableError, UnsupportedFormatError,
                     VecstoreError)
from .jobs import RefreshJob
from .types import (CollectionConfig, CollectionStats, ProfiledSearch, Rows, SearchResult,
                    VectorFieldInfo)

__version__ = "0.1.0"

# A library's loggers get no handler but this one (the logging HOWTO): what reaches the console,
# and at which level, is the application's choice; without it Python printed our warnings to
# stderr through its last-resort handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "connect", "Client", "Database", "Collection", "functions",
    "SearchResult", "Rows", "CollectionStats", "CollectionConfig", "VectorFieldInfo", "ProfiledSearch", "RefreshJob",
    "VecstoreError", "InvalidArgumentError", "DimensionMismatchError", "InvalidNameError",
    "FilterSyntaxError", "FilterTypeError", "QuerySyntaxError", "NotSupportedError", "NotFoundError",
    "AlreadyExistsError",
    "ConflictError", "ReadOnlyError", "ClosedError", "LockedError", "StorageFullError",
    "CorruptionError", "BadBackupError", "UnsupportedFormatError", "JobFailedError", "JobCancelledError",
    "TimeoutError_", "UnauthorizedError", "ForbiddenPathError", "PayloadTooLargeError", "UnavailableError",
]
