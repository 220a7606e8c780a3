from gleam_geo.evaluation import QueryOutcome
from gleam_geo.evaluation.report import write_report


def test_report_prints_calibration_and_radius_columns(tmp_path):
    outcomes = [QueryOutcome(1, 0.1, 1.0, 0.9, True, 2.0), QueryOutcome(None, 900.0, 90.0, 0.1, False, 2.0)]
    outside = [QueryOutcome(None, 500.0, 0.0, 0.02, False, 2.0, in_index=False)]
    extra = {"uav": {"ece": 0.05, "brier": 0.04, "radius_coverage": 0.9}}
    report = write_report(
        {"uav": outcomes, "out": outside}, {}, tmp_path, extra=extra, reliability=[(0.9, 1.0, 3, 0.95, 1.0)]
    ).read_text()
    assert "| ECE | Brier | radius coverage |" in report
    assert "| 0.050 | 0.040 | 90% |" in report
    assert "| 0.9-1.0 | 3 | 0.950 | 1.000 |" in report
    assert "| out | 1 |" in report and "0.020 | 0.020 |" in report
