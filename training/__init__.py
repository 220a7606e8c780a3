"""Training code for gleam_geo models; it uses only the library's public API."""
