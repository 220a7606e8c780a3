"""Compatibility shims for third-party packages (kept small and documented)."""
