"""Processing integration: the ``gleam_geo`` provider and its algorithms."""

from .provider import PROVIDER_ID, GleamProvider

__all__ = ["PROVIDER_ID", "GleamProvider"]
