"""Exceptions raised by gleam_geo.

Every error a user can act on is a subclass of :class:`GleamGeoError` and, where it
fits, of a built-in exception too, so ``except FileNotFoundError`` keeps working.
Messages are one line: the cause, then the fix.
"""

from __future__ import annotations

__all__ = [
    "CancelledError",
    "CheckpointError",
    "CorruptImageError",
    "DeviceError",
    "EmptyIndexError",
    "ExplainerError",
    "GleamGeoError",
    "IndexFormatError",
    "ModelMismatchError",
    "NoCoverageError",
    "NotGeoreferencedError",
    "RandomWeightsError",
    "RasterReadError",
    "UnknownCRSError",
    "UnknownEncoderError",
]


class GleamGeoError(Exception):
    """Root of every error gleam_geo raises on purpose."""


class NotGeoreferencedError(GleamGeoError, ValueError):
    """A raster has no CRS or no geotransform."""


class UnknownCRSError(GleamGeoError, ValueError):
    """A CRS string or code that PROJ does not know."""


class RasterReadError(GleamGeoError, OSError):
    """GDAL could not open or read a raster."""


class CorruptImageError(GleamGeoError, ValueError):
    """A query image that cannot be decoded."""


class NoCoverageError(GleamGeoError, ValueError):
    """A region that no indexed chip or raster covers."""


class EmptyIndexError(GleamGeoError, ValueError):
    """A search on an index that holds no vectors."""


class ModelMismatchError(GleamGeoError, ValueError):
    """An index used with an encoder other than the one that built it."""


class IndexFormatError(GleamGeoError, OSError):
    """An index directory that is missing files or was written by an incompatible version."""


class CheckpointError(GleamGeoError, ValueError):
    """A checkpoint that does not fit the encoder it is loaded into."""


class UnknownEncoderError(GleamGeoError, KeyError):
    """An encoder name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RandomWeightsError(GleamGeoError, ValueError):
    """An encoder that would run with random weights without the caller asking for it."""


class DeviceError(GleamGeoError, RuntimeError):
    """A compute device that was asked for but is not available."""


class CancelledError(GleamGeoError):
    """Long-running work stopped because the caller cancelled it."""


class ExplainerError(GleamGeoError, RuntimeError):
    """An explainer backend that could not give an explanation (auth, model, reply, network)."""
