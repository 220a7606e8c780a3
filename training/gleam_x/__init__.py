"""GLEAM-X training: build explained (query view, satellite chip) pairs, fine-tune on them, evaluate."""
