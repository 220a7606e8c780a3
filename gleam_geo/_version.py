"""Version of gleam_geo, read by the package and recorded in index manifests."""

__version__ = "0.1.0"
