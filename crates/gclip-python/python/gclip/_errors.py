"""The exceptions gclip raises. Messages are the ones the ``gclip`` command prints."""

from __future__ import annotations

from typing import Optional


class GclipError(Exception):
    """Base class of every error reported by the gclip library."""


class ModelError(GclipError):
    """A model could not be loaded or run (missing, corrupt or unsupported checkpoint)."""


class ImageError(GclipError, ValueError):
    """An image could not be read, decoded or preprocessed; the message names the file."""


class InvalidInputError(GclipError, ValueError):
    """An argument the library rejects: a wrong shape, an empty label list, bad settings."""


class SearchIndexError(GclipError):
    """An index operation failed. ``code`` is Marqo's error code (e.g. ``index_not_found``)
    and ``status`` the HTTP status Marqo would answer with."""

    code: Optional[str] = None
    status: Optional[int] = None


class TrainError(GclipError):
    """A training run could not start or failed."""


__all__ = [
    "GclipError",
    "ModelError",
    "ImageError",
    "InvalidInputError",
    "SearchIndexError",
    "TrainError",
]
