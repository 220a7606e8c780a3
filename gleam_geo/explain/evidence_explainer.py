"""The offline evidence explainer: a verdict and its reasons, written from measured evidence.

No model and no network: the verdict follows the calibrated ``match_prob`` (so the two
never disagree), and the text is composed clause by clause from the measured facts,
each clause picked by a threshold and quoting its number. Conflicting signals are
called out, and weak evidence is said to be weak. English and Simplified Chinese are
written separately (the same facts, each in its own idiom), not translated word for word.
"""

# ruff: noqa: RUF001  (the Chinese text uses full-width punctuation on purpose)
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .base import Evidence, Explanation, Language, check_language

__all__ = ["EvidenceExplainer", "Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """Where the explainer's wording changes. Defaults suit SIFT + MAGSAC on aerial imagery.

    Attributes:
        few_inliers: fewer verified matches than this is thin evidence.
        many_inliers: at least this many is strong evidence.
        low_ratio: an inlier ratio below this means most matches were noise.
        narrow_spread: inliers covering less of the photo than this are clustered.
        wide_spread: covering at least this much, they span the photo.
        scale_range: plausible photo-to-chip ground resolution ratios.
        nadir_stretch: anisotropy below this reads as a straight-down view.
        oblique_stretch: anisotropy up to this reads as a tilted camera; above, as distortion.
        colour_good: colour correlation at or above this agrees.
        colour_poor: below this it disagrees.
        structure_good: edge correlation at or above this lines up.
        structure_poor: below this it does not.
        narrow_margin: a retrieval lead smaller than this does not single the chip out.
        ambiguous_peak: a structure-search peak less than this many times the best one
            elsewhere does not single the place out.
        uncertain: match probabilities within this of 0.5 make an uncertain verdict.
    """

    few_inliers: int = 15
    many_inliers: int = 40
    low_ratio: float = 0.15
    narrow_spread: float = 0.1
    wide_spread: float = 0.3
    scale_range: tuple[float, float] = (0.2, 5.0)
    nadir_stretch: float = 1.25
    oblique_stretch: float = 2.0
    colour_good: float = 0.6
    colour_poor: float = 0.3
    structure_good: float = 0.35
    structure_poor: float = 0.15
    narrow_margin: float = 0.01
    ambiguous_peak: float = 1.15
    uncertain: float = 0.15


_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "head_yes_high": "Same place, with high confidence (match probability {p:.0%}).",
        "head_yes_mid": "Probably the same place (match probability {p:.0%}).",
        "head_yes_low": "Leaning towards the same place, but not by much (match probability {p:.0%}).",
        "head_no_high": "Not the same place (match probability {p:.0%}).",
        "head_no_mid": "Probably not the same place (match probability {p:.0%}).",
        "head_no_low": "Leaning towards a different place, but it is close (match probability {p:.0%}).",
        "head_yes_rule": "Same place, judged from the keypoints alone (no calibrated probability).",
        "head_no_rule": "Not shown to be the same place (no calibrated probability; too few keypoints).",
        "retrieval_lead": "Retrieval ranked this chip first, with similarity {s:.2f}, "
        "{m:.3f} ahead of the next",
        "retrieval_behind": "Its retrieval similarity is {s:.2f}, {m:.3f} below the best candidate",
        "retrieval_only": "Its retrieval similarity is {s:.2f}",
        "retrieval_narrow": ", a lead too narrow for retrieval alone to single it out",
        "no_matches": "Hardly any keypoints match between the photo and the chip ({m} tentative matches), "
        "so nothing ties the two images together.",
        "no_inliers": "Of {m} tentative keypoint matches, too few agree on one geometric transformation "
        "to verify, so they are chance look-alikes rather than the same ground.",
        "no_inliers_unknown": "No set of keypoint matches agrees on a single geometric transformation "
        "between the photo and the chip, so nothing ties the two images together.",
        "inliers": "{n} of {m} keypoint matches ({r:.0%}) agree on one homography, "
        "with a reprojection error of {rms:.1f} px",
        "inliers_no_total": "{n} keypoint matches agree on one homography, "
        "with a reprojection error of {rms:.1f} px",
        "spread_wide": ", and they are spread over {a:.0%} of the photo",
        "spread_mid": ", covering {a:.0%} of the photo",
        "spread_narrow": ", but they cluster in {a:.0%} of the photo, so the fit rests on one small area",
        "geometry": "The fit puts the photo at {gsd:.2f} m per pixel ({k:.1f}x the chip's pixel size), "
        "its top facing {h:.0f}° clockwise from north",
        "scale_odd": ", an unusual scale difference",
        "nadir": ", seen almost straight down (stretch {t:.2f})",
        "oblique": ", with the perspective stretch ({t:.2f}) of a tilted camera",
        "distorted": ", with a strong distortion (stretch {t:.2f}) that a real camera rarely produces",
        "appearance": "With the chip warped onto the photo, {colour} and {structure}.",
        "colour_good": "colours agree closely (r = {c:.2f})",
        "colour_mid": "colours agree in part (r = {c:.2f})",
        "colour_poor": "colours differ (r = {c:.2f})",
        "colour_none": "colours could not be compared",
        "structure_good": "edges line up (r = {e:.2f})",
        "structure_mid": "edges line up only loosely (r = {e:.2f})",
        "structure_poor": "edges do not line up (r = {e:.2f})",
        "structure_none": "edges could not be compared",
        "structure": "No keypoint matches verified, as between images taken years or seasons apart, "
        "so the place was found by its layout of edges (roads, field borders, shores): the photo's edge "
        "directions correlate with the reference at r = {ncc:.2f}, {ratio:.2f} times the best match "
        "elsewhere in the searched area",
        "structure_geometry": ", with the photo at {gsd:.2f} m per pixel and its top facing {h:.0f}° "
        "clockwise from north",
        "structure_ambiguous": "Another spot in the searched area lines up almost as well "
        "({ratio:.2f} times), so the position may be ambiguous.",
        "structure_weak": "An edge correlation this weak also turns up between unrelated places.",
        "thin": "The evidence is thin: only {n} verified matches.",
        "low_ratio": "Most matches were rejected ({r:.0%} kept), which is typical of repetitive texture.",
        "colour_conflict": "The colours disagree, which a different season, time of day or camera can cause; "
        "the geometry carries the verdict.",
        "structure_conflict": "Edge structure agrees poorly, which weakens the case.",
        "behind_conflict": "Retrieval scored another chip higher (an overlapping neighbour can show the "
        "same ground), but keypoints confirmed this one.",
        "matches_conflict": "Conflicting evidence: {n} matches fit one homography, "
        "yet the calibrated probability stays low.",
        "lookalike": "Retrieval alone is not proof: look-alike roofs and roads fool it, "
        "and no keypoints confirm the place.",
        "uncertain": "The evidence is weak either way; treat this verdict as uncertain.",
        "check_yes": "To check: in the figure, the green outline on the reference (the chip is the grey "
        "square) should cover the same buildings and roads as the photo.",
        "check_no": "To check: compare the photo and the chip side by side in the figure.",
        "sep": " ",
        "end": ".",
    },
    "zh": {
        "head_yes_high": "是同一地点，把握很大（匹配概率 {p:.0%}）。",
        "head_yes_mid": "很可能是同一地点（匹配概率 {p:.0%}）。",
        "head_yes_low": "倾向于判定为同一地点，但把握不大（匹配概率 {p:.0%}）。",
        "head_no_high": "不是同一地点（匹配概率 {p:.0%}）。",
        "head_no_mid": "很可能不是同一地点（匹配概率 {p:.0%}）。",
        "head_no_low": "倾向于判定为不同地点，但两种可能都不能排除（匹配概率 {p:.0%}）。",
        "head_yes_rule": "仅凭特征点判断为同一地点（没有校准概率）。",
        "head_no_rule": "无法证明是同一地点（没有校准概率，特征点太少）。",
        "retrieval_lead": "检索时这块影像排在第一，相似度 {s:.2f}，比第二名高 {m:.3f}",
        "retrieval_behind": "它的检索相似度为 {s:.2f}，比最佳候选低 {m:.3f}",
        "retrieval_only": "它的检索相似度为 {s:.2f}",
        "retrieval_narrow": "，领先幅度太小，单靠检索分不出高下",
        "no_matches": "照片和影像块之间几乎没有能配上的特征点（只有 {m} 对初步匹配），"
        "两幅图像没有可靠的对应关系。",
        "no_inliers": "{m} 对初步匹配的特征点里，能用同一个几何变换解释的太少，无法通过验证，"
        "说明它们只是碰巧相像，并非同一片地面。",
        "no_inliers_unknown": "照片和影像块之间找不到一组能用同一几何变换解释的特征点匹配，"
        "两幅图像没有可靠的对应关系。",
        "inliers": "{m} 对特征点匹配中有 {n} 对（{r:.0%}）符合同一个单应变换，重投影误差 {rms:.1f} 像素",
        "inliers_no_total": "有 {n} 对特征点匹配符合同一个单应变换，重投影误差 {rms:.1f} 像素",
        "spread_wide": "，而且分布在照片 {a:.0%} 的范围内",
        "spread_mid": "，覆盖照片的 {a:.0%}",
        "spread_narrow": "，但都挤在照片 {a:.0%} 的一小块区域里，配准只靠局部支撑",
        "geometry": "由此推算，照片的地面分辨率约为每像素 {gsd:.2f} 米（是影像块像素的 {k:.1f} 倍），"
        "画面上方朝向自正北顺时针 {h:.0f}°",
        "scale_odd": "，比例差异不太正常",
        "nadir": "，基本是垂直俯拍（拉伸系数 {t:.2f}）",
        "oblique": "，带有倾斜拍摄造成的透视拉伸（系数 {t:.2f}）",
        "distorted": "，但畸变很强（拉伸系数 {t:.2f}），真实相机很少拍成这样",
        "appearance": "把影像块按这一变换对齐到照片上之后，{colour}，{structure}。",
        "colour_good": "色彩高度一致（r = {c:.2f}）",
        "colour_mid": "色彩部分一致（r = {c:.2f}）",
        "colour_poor": "色彩差别明显（r = {c:.2f}）",
        "colour_none": "色彩无法比较",
        "structure_good": "边缘轮廓也对得上（r = {e:.2f}）",
        "structure_mid": "边缘轮廓只是大致吻合（r = {e:.2f}）",
        "structure_poor": "边缘轮廓对不上（r = {e:.2f}）",
        "structure_none": "边缘轮廓无法比较",
        "structure": "没有特征点匹配能通过验证（相隔数年或不同季节拍摄的影像常常如此），"
        "因此改用边缘布局（道路、田埂、水岸）来定位：照片的边缘方向与参考影像的相关系数为 r = {ncc:.2f}，"
        "是搜索范围内其他位置最佳匹配的 {ratio:.2f} 倍",
        "structure_geometry": "，推算照片地面分辨率约为每像素 {gsd:.2f} 米，"
        "画面上方朝向自正北顺时针 {h:.0f}°",
        "structure_ambiguous": "搜索范围内另有位置几乎同样吻合（{ratio:.2f} 倍），定位可能有歧义。",
        "structure_weak": "这么弱的边缘相关性在毫不相干的地点之间也会出现。",
        "thin": "证据偏少：经过验证的匹配只有 {n} 对。",
        "low_ratio": "大部分匹配被剔除（只保留 {r:.0%}），这在纹理重复的区域很常见。",
        "colour_conflict": "色彩不一致，可能是季节、拍摄时间或相机不同所致；结论主要依据几何关系。",
        "structure_conflict": "边缘结构吻合度低，削弱了这一判断。",
        "behind_conflict": "检索给另一块影像打了更高的分（与它重叠的相邻影像块也可能拍到同一片地面），"
        "但得到特征点证实的是这一块。",
        "matches_conflict": "证据相互矛盾：有 {n} 对匹配符合同一变换，但校准后的概率仍然偏低。",
        "lookalike": "单凭检索并不能证明是同一地点：相似的屋顶和道路很容易造成误判，而且没有特征点能够证实。",
        "uncertain": "整体证据偏弱，这个结论并不确定。",
        "check_yes": "核查方法：示意图右侧参考影像上的绿色轮廓（灰色方框是影像块），"
        "应当框住与照片相同的建筑和道路。",
        "check_no": "核查方法：在示意图中并排对照照片和影像块，看能否找到相同的地物。",
        "sep": "",
        "end": "。",
    },
}


def _level(value: float, good: float, poor: float, prefix: str) -> str:
    """``<prefix>_good``, ``_poor`` or ``_mid`` for the good and poor thresholds (spread: wide, narrow)."""
    names = ("wide", "narrow") if prefix == "spread" else ("good", "poor")
    level = names[0] if value >= good else names[1] if value < poor else "mid"
    return f"{prefix}_{level}"


class EvidenceExplainer:
    """Explains a pair from its measured :class:`~gleam_geo.explain.Evidence`; offline, no model.

    The verdict is ``match_prob >= 0.5`` and the confidence is the probability of the
    verdict, so both agree with the ``match_prob`` column. Without a calibrated
    probability, the verdict falls back to a rule on the verified matches.

    Args:
        thresholds: where the wording changes (see :class:`Thresholds`).
    """

    model_id = "evidence-v1"

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()

    def verdict(self, evidence: Evidence) -> tuple[bool, float]:
        """The verdict and its confidence (0.5-1) for ``evidence``."""
        if evidence.match_prob is not None:
            prob = float(evidence.match_prob)
            same = prob >= 0.5
            return same, prob if same else 1.0 - prob
        t = self.thresholds
        same = evidence.inliers >= t.few_inliers and evidence.inlier_ratio >= t.low_ratio
        if same:
            strength = min(1.0, evidence.inliers / t.many_inliers)
        else:
            strength = 1.0 - evidence.inliers / t.few_inliers
        return same, 0.5 + 0.5 * float(np.clip(strength, 0.0, 1.0))

    def explain(
        self, query: np.ndarray, reference: np.ndarray, evidence: Evidence, language: Language
    ) -> Explanation:
        """Write the verdict on ``evidence`` in ``language``; the images are not read again."""
        del query, reference  # everything needed was measured into ``evidence``
        language = check_language(language)
        same, confidence = self.verdict(evidence)
        text = _TEXT[language]

        def say(key: str, **values: object) -> str:
            return text[key].format(**values)

        parts = [self._head(evidence, same, say)]
        parts += self._body(evidence, same, say, text["end"])
        parts += self._caveats(evidence, same, say)
        placed = evidence.inliers > 0 or evidence.method == "structure"
        parts.append(say("check_yes" if same and placed else "check_no"))
        return Explanation(
            verdict=same,
            confidence=round(confidence, 4),
            reasoning=text["sep"].join(part for part in parts if part),
            language=language,
            model=self.model_id,
            evidence=evidence,
        )

    def _head(self, e: Evidence, same: bool, say: Callable[..., str]) -> str:
        if e.match_prob is None:
            return say("head_yes_rule" if same else "head_no_rule")
        p = float(e.match_prob)
        distance = abs(p - 0.5)
        level = "high" if distance >= 0.4 else "mid" if distance >= self.thresholds.uncertain else "low"
        return say(f"head_{'yes' if same else 'no'}_{level}", p=p)

    def _body(self, e: Evidence, same: bool, say: Callable[..., str], end: str) -> list[str]:
        t = self.thresholds
        parts = []
        if e.retrieval_score is not None:
            if e.score_margin is None:
                sentence = say("retrieval_only", s=e.retrieval_score)
            elif e.score_margin > 0:
                sentence = say("retrieval_lead", s=e.retrieval_score, m=e.score_margin)
                if e.score_margin < t.narrow_margin:
                    sentence += say("retrieval_narrow")
            else:
                sentence = say("retrieval_behind", s=e.retrieval_score, m=-e.score_margin)
            parts.append(sentence + end)
        if e.method == "structure":
            return [*parts, *self._structure_body(e, say, end)]
        if e.inliers == 0:
            if e.putative_matches == 0:
                parts.append(say("no_inliers_unknown"))
            else:
                key = "no_matches" if e.putative_matches < t.few_inliers else "no_inliers"
                parts.append(say(key, m=e.putative_matches))
            return parts
        rms = e.reprojection_rms_px or 0.0
        if e.putative_matches:
            sentence = say("inliers", n=e.inliers, m=e.putative_matches, r=e.inlier_ratio, rms=rms)
        else:
            sentence = say("inliers_no_total", n=e.inliers, rms=rms)
        spread = e.inlier_spread
        key = _level(spread, t.wide_spread, t.narrow_spread, "spread")
        parts.append(sentence + say(key, a=spread) + end)
        if e.gsd_m is not None and e.scale_ratio is not None and e.heading_deg is not None:
            sentence = say("geometry", gsd=e.gsd_m, k=e.scale_ratio, h=e.heading_deg)
            if not t.scale_range[0] <= e.scale_ratio <= t.scale_range[1]:
                sentence += say("scale_odd")
            if e.tilt_anisotropy is not None:
                stretch = e.tilt_anisotropy
                key = "nadir" if stretch < t.nadir_stretch else "distorted"
                key = "oblique" if t.nadir_stretch <= stretch <= t.oblique_stretch else key
                sentence += say(key, t=stretch)
            parts.append(sentence + end)
        return parts + self._appearance(e, say)

    def _structure_body(self, e: Evidence, say: Callable[..., str], end: str) -> list[str]:
        """What the structure search measured: its peak, the geometry and the appearance through it."""
        sentence = say("structure", ncc=e.structure_ncc or 0.0, ratio=e.structure_peak_ratio or 0.0)
        if e.gsd_m is not None and e.heading_deg is not None:
            sentence += say("structure_geometry", gsd=e.gsd_m, h=e.heading_deg)
        return [sentence + end, *self._appearance(e, say)]

    def _appearance(self, e: Evidence, say: Callable[..., str]) -> list[str]:
        """The colour and edge agreement through the fitted transform, when measured."""
        if e.colour_agreement is None and e.structure_agreement is None:
            return []
        return [say("appearance", colour=self._colour(e, say), structure=self._structure(e, say))]

    def _colour(self, e: Evidence, say: Callable[..., str]) -> str:
        c = e.colour_agreement
        if c is None:
            return say("colour_none")
        t = self.thresholds
        return say(_level(c, t.colour_good, t.colour_poor, "colour"), c=c)

    def _structure(self, e: Evidence, say: Callable[..., str]) -> str:
        s = e.structure_agreement
        if s is None:
            return say("structure_none")
        t = self.thresholds
        return say(_level(s, t.structure_good, t.structure_poor, "structure"), e=s)

    def _caveats(self, e: Evidence, same: bool, say: Callable[..., str]) -> list[str]:
        """Statements on weak or conflicting evidence."""
        t = self.thresholds
        notes = []
        if e.method == "structure":
            ratio = e.structure_peak_ratio
            if same and ratio is not None and ratio < t.ambiguous_peak:
                notes.append(say("structure_ambiguous", ratio=ratio))
            if same and e.colour_agreement is not None and e.colour_agreement < t.colour_poor:
                notes.append(say("colour_conflict"))
            if not same:
                notes.append(say("structure_weak"))
        elif same:
            if 0 < e.inliers < t.few_inliers:
                notes.append(say("thin", n=e.inliers))
            if e.inliers and e.inlier_ratio < t.low_ratio:
                notes.append(say("low_ratio", r=e.inlier_ratio))
            if e.colour_agreement is not None and e.colour_agreement < t.colour_poor:
                notes.append(say("colour_conflict"))
            if e.structure_agreement is not None and e.structure_agreement < t.structure_poor:
                notes.append(say("structure_conflict"))
            if e.score_margin is not None and e.score_margin < 0 and e.inliers:
                notes.append(say("behind_conflict"))
        else:
            if e.inliers >= t.few_inliers:
                notes.append(say("matches_conflict", n=e.inliers))
            elif e.score_margin is not None and e.score_margin > 0:
                notes.append(say("lookalike"))
        if e.match_prob is not None and abs(float(e.match_prob) - 0.5) < t.uncertain:
            notes.append(say("uncertain"))
        return notes
