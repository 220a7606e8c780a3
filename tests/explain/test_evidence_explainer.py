"""The evidence explainer on real pairs: measured evidence, verdicts, text, figures, cache."""

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gleam_geo.explain import (
    CachedExplainer,
    Evidence,
    EvidenceExplainer,
    ExplanationCache,
    explain_refinement,
    get_explainer,
    measure_evidence,
)
from gleam_geo.refine import Refiner

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def refined(pairs):
    """Kept-image refinements of the true and the false pair."""
    true_query, false_query, chip = pairs
    refiner = Refiner(keep_images=True)
    frame = pd.DataFrame([chip])
    return (
        refiner,
        refiner.refine(true_query.pixels, frame, [0.7])[0],
        refiner.refine(false_query.pixels, frame, [0.7])[0],
    )


def test_evidence_of_a_true_pair_is_measured(pairs, refined):
    true_query, _, _ = pairs
    _, good, _ = refined
    evidence = measure_evidence(true_query.pixels, good, retrieval_score=0.7, score_margin=0.05)
    assert evidence.inliers == good.inliers >= 15
    assert evidence.putative_matches >= evidence.inliers
    assert 0.2 < evidence.inlier_spread <= 1.0
    assert evidence.scale_ratio == pytest.approx((60.0 / 256) / 0.2976, rel=0.2)
    assert abs((evidence.heading_deg - true_query.true_heading_deg + 180) % 360 - 180) < 5
    assert 1.0 <= evidence.tilt_anisotropy < 2.0
    assert evidence.structure_agreement > 0.5
    assert evidence.colour_agreement > 0.3


def test_evidence_of_a_false_pair_has_no_geometry(pairs, refined):
    _, false_query, _ = pairs
    refiner, _, bad = refined
    evidence = measure_evidence(false_query.pixels, bad, matcher=refiner.matcher)
    assert evidence.inliers == 0
    assert evidence.colour_agreement is None and evidence.structure_agreement is None
    assert evidence.heading_deg is None and evidence.inlier_spread == 0.0
    assert evidence.putative_matches > 0  # tentative matches were found but did not verify


@pytest.mark.parametrize("language", ["en", "zh"])
def test_true_and_false_pairs_get_different_verdicts_and_text(pairs, refined, tmp_path, language):
    true_query, false_query, chip = pairs
    refiner, good, bad = refined
    explainer = EvidenceExplainer()
    yes = explain_refinement(
        true_query.pixels, chip, good, explainer, language, figure_path=tmp_path / "yes.png", refiner=refiner
    )
    no = explain_refinement(
        false_query.pixels, chip, bad, explainer, language, figure_path=tmp_path / "no.png", refiner=refiner
    )
    assert yes.verdict is True and no.verdict is False
    assert yes.verdict == (good.match_prob >= 0.5) and no.verdict == (bad.match_prob >= 0.5)
    assert yes.model == no.model == "evidence-v1" and yes.language == language
    assert yes.reasoning != no.reasoning
    assert str(yes.evidence.inliers) in yes.reasoning  # the numbers are quoted
    assert bool(CJK.search(yes.reasoning)) == (language == "zh")
    for explanation in (yes, no):
        pixels = np.asarray(Image.open(explanation.figure).convert("RGB"))
        assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.std() > 20
        assert explanation.figure.stat().st_size < 300_000


@pytest.mark.parametrize("prob", [0.02, 0.3, 0.49, 0.5, 0.51, 0.8, 0.99])
def test_verdict_agrees_with_match_prob(prob):
    explanation = EvidenceExplainer().explain(
        None, None, Evidence(match_prob=prob, inliers=20, inlier_ratio=0.5), "en"
    )
    assert explanation.verdict == (prob >= 0.5)
    assert explanation.confidence == pytest.approx(max(prob, 1 - prob))


@pytest.mark.parametrize(("language", "weak"), [("en", "uncertain"), ("zh", "不确定")])
def test_weak_and_conflicting_evidence_is_stated(language, weak):
    explainer = EvidenceExplainer()
    thin = Evidence(match_prob=0.55, inliers=9, putative_matches=60, inlier_ratio=0.15, inlier_spread=0.05)
    text = explainer.explain(None, None, thin, language).reasoning
    assert weak in text and "9" in text
    conflict = Evidence(match_prob=0.2, inliers=30, putative_matches=40, inlier_ratio=0.75, inlier_spread=0.5)
    assert "30" in explainer.explain(None, None, conflict, language).reasoning
    strong = Evidence(match_prob=0.99, inliers=99, putative_matches=140, inlier_ratio=0.7, inlier_spread=0.7)
    assert weak not in explainer.explain(None, None, strong, language).reasoning


@pytest.mark.parametrize(
    ("language", "edges", "tentative"), [("en", "edge", "tentative"), ("zh", "边缘", "初步匹配")]
)
def test_structure_search_evidence_is_explained_as_such(language, edges, tentative):
    explainer = EvidenceExplainer()
    found = Evidence(
        match_prob=0.97, method="structure", structure_ncc=0.41, structure_peak_ratio=1.62,
        heading_deg=132.0, gsd_m=4.1, colour_agreement=0.1, structure_agreement=0.3,
    )  # fmt: skip
    text = explainer.explain(None, None, found, language).reasoning
    assert edges in text and "0.41" in text and "132" in text and tentative not in text
    assert text.count("1.62") == 1  # a clear peak: no ambiguity caveat
    ambiguous = Evidence(match_prob=0.6, method="structure", structure_ncc=0.3, structure_peak_ratio=1.05)
    assert explainer.explain(None, None, ambiguous, language).reasoning.count("1.05") == 2
    absent = Evidence(match_prob=0.05, method="structure", structure_ncc=0.12, structure_peak_ratio=1.02)
    verdict = explainer.explain(None, None, absent, language)
    assert verdict.verdict is False and edges in verdict.reasoning


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        EvidenceExplainer().explain(None, None, Evidence(match_prob=0.9), "fr")


class Counting:
    """A backend that counts its calls."""

    model_id = "counting:v1"

    def __init__(self):
        self.calls = 0

    def explain(self, query, reference, evidence, language):
        self.calls += 1
        return EvidenceExplainer().explain(query, reference, evidence, language)


def test_cache_answers_repeats_without_calling_the_backend(pairs, refined, tmp_path):
    true_query, _, chip = pairs
    _, good, _ = refined
    backend = Counting()
    cached = CachedExplainer(backend, ExplanationCache(tmp_path), version="p1")
    first = explain_refinement(true_query.pixels, chip, good, cached, "zh")
    second = explain_refinement(true_query.pixels, chip, good, cached, "zh")
    assert backend.calls == 1
    assert (second.reasoning, second.verdict, second.model) == (first.reasoning, first.verdict, first.model)
    explain_refinement(true_query.pixels, chip, good, cached, "en")  # another language: a miss
    CachedExplainer(backend, ExplanationCache(tmp_path), version="p2").explain(
        true_query.pixels, true_query.pixels, second.evidence, "zh"
    )
    assert backend.calls == 3
    for entry in tmp_path.rglob("*.json"):
        entry.write_text("{not json")
    explain_refinement(true_query.pixels, chip, good, cached, "zh")  # a damaged entry is a miss
    assert backend.calls == 4


def test_registry_names_and_environment(monkeypatch, tmp_path):
    for name in ("GLEAM_GEO_EXPLAIN_BACKEND", "GLEAM_GEO_LLM_BASE_URL", "GLEAM_GEO_EXPLAIN_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert get_explainer().model_id == "evidence-v1"
    assert get_explainer("evidence").model_id == "evidence-v1"
    backend = Counting()
    assert get_explainer(backend) is backend
    with pytest.raises(ValueError, match=r"unknown explainer backend 'gpt'.*evidence, openai, transformers"):
        get_explainer("gpt")
    with pytest.raises(ValueError, match="GLEAM_GEO_EXPLAIN_MODEL"):
        get_explainer("transformers")
    monkeypatch.setenv("GLEAM_GEO_LLM_BASE_URL", "http://localhost:9/v1")
    monkeypatch.setenv("GLEAM_GEO_LLM_MODEL", "qwen2.5-vl")
    switched = get_explainer(cache_dir=tmp_path)
    assert switched.model_id == "openai:qwen2.5-vl" and isinstance(switched, CachedExplainer)
    monkeypatch.setenv("GLEAM_GEO_EXPLAIN_BACKEND", "evidence")
    assert get_explainer().model_id == "evidence-v1"
