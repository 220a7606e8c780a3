"""Input and output at the library's edges: query images in, results files out."""

from .atomic import atomic_path, atomic_write_bytes, atomic_write_text
from .images import ImageInput, QueryImage, load_image
from .writers import FORMATS, write_results

__all__ = [
    "FORMATS",
    "ImageInput",
    "QueryImage",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_image",
    "write_results",
]
