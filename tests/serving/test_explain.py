"""Factor texts a rep or manager reads: values as words and percentages, compared with the usual, no log-odds."""

from __future__ import annotations

import re

import numpy as np
import pytest

from features import schema as s
from models.bundle import FeatureSpec, SpecFeature
from serving.explain import Explainer, influence, percent, value_text


def _spec(names: list[str]) -> FeatureSpec:
    catalogue = s.feature_by_name(s.BASE_FEATURES)
    return FeatureSpec([SpecFeature.from_feature(catalogue[n], ("call", "email") if catalogue[n].kind == s.CATEGORICAL
                                                 else None) for n in names])


def _factors(names, values, effects, usual=None):
    spec = _spec(names)
    contrib = np.array([[*effects, 0.0]])
    raw = {n: np.array([v], dtype=object if isinstance(v, str) else float) for n, v in zip(names, values, strict=True)}
    return {f["feature"]: f for f in Explainer(spec, len(names), usual_rep_rate=usual).factors(contrib, raw, 0)}


def test_the_demo_factors_say_what_the_value_means_against_the_usual():
    got = _factors(["rep_labelled_activities", "rep_outcome_rate", "automated_share_deal_30d"],
                   [4361.0, 0.09, 0.15], [-0.43, -0.2, 0.39], usual=0.12)
    record = got["rep_labelled_activities"]["text"]
    assert record.startswith("this rep's outcome rate over 4,361 activities (9%) is below the average of all reps (12%)")
    assert "long enough to be trusted" in record and record.endswith("lowers the chance that the deal advances")
    assert got["rep_outcome_rate"]["text"].startswith("this rep's outcome rate over 4,361 activities (9%) is below")
    share = got["automated_share_deal_30d"]["text"]
    assert share == ("15% of the touches to this deal in the last 30 days were automated: compared with a typical "
                     "activity this raises the chance that the deal advances")
    assert all(f["effect"] in (-0.43, -0.2, 0.39) for f in got.values())  # the number stays for programs


def test_codes_read_as_words_and_missing_values_say_so():
    got = _factors(["is_automated", "weekday_local", "seniority", "max_seniority_engaged_deal", "days_since_touch_contact"],
                   [1.0, 0.0, "c_level", 4.0, np.nan], [0.05, -0.2, 0.6, 0.3, -0.1])
    assert got["is_automated"]["text"].startswith("sent by a sequence or bulk tool (automated): ")
    assert "slightly raises" in got["is_automated"]["text"]
    assert got["weekday_local"]["text"].startswith("done on a Monday: ")
    assert got["seniority"]["text"].startswith("it reaches a C-level executive: ") and "strongly raises" in \
        got["seniority"]["text"]
    assert got["max_seniority_engaged_deal"]["text"].startswith("the most senior person reached on this deal so far is a VP")
    assert got["days_since_touch_contact"]["text"].startswith("no earlier touch to this contact is known: ")


def test_a_short_record_without_a_known_average_still_reads_plainly():
    got = _factors(["rep_labelled_activities", "rep_outcome_rate"], [40.0, 0.2], [0.2, 0.1])
    assert got["rep_labelled_activities"]["text"] == (
        "this rep's past activities were followed by a deal advance 20% of the time over 40 activities; a record of "
        "40 activities is short, so it counts for little: this raises the chance that the deal advances")


@pytest.mark.parametrize("feature", s.BASE_FEATURES, ids=lambda f: f.name)
def test_every_catalogue_text_reads_as_a_sentence(feature):
    value = "email" if feature.kind == s.CATEGORICAL else 3.0 if not feature.unit.startswith("share") else 0.25
    text = _factors([feature.name], [value], [-0.3])[feature.name]["text"]
    assert "{v}" not in text and "log-odds" not in text and "_" not in text.split(":")[0], text
    assert re.search(r"(raises|lowers) the chance that the deal advances$", text), text
    assert value_text(feature.name, feature.unit if feature.kind != s.CATEGORICAL else "", value) in text


def test_helpers():
    assert percent(0.153) == "15%" and percent(0.004) == "0.4%" and percent(0.09) == "9%" and percent(0.095) == "9.5%"
    assert influence(0.05) == "slightly raises the chance that the deal advances"
    assert influence(-0.7) == "strongly lowers the chance that the deal advances"
    assert value_text("employees", "employees", 4361.0) == "4,361"
