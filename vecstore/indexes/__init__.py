"""Derived vector indexes. Each is rebuildable from LMDB; see ``base.VectorIndex``."""
