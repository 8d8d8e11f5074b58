"""Building blocks of the CRM adapters: ids, time parsing, config, text rules."""

from __future__ import annotations

import pandas as pd
import pytest

from importers.crm import config_from_dict, load_config
from importers.crm.common import disposition_responses, reply_kind, seniority_of, slug
from importers.crm.errors import CrmConfigError, CrmInputError
from importers.crm.ids import id_suffix, make_sf_id, normalize_sf_id
from importers.crm.times import DstNotes, local_dates, local_noon, parse_dates, parse_instants


@pytest.mark.parametrize("given, canonical", [
    ("0035g00000OCj2IAAT", "0035g00000OCj2IAAT"),      # already canonical
    ("0035g00000OCj2I", "0035g00000OCj2IAAT"),         # 15 characters: suffix computed
    ("0035G00000OCJ2IAAT", "0035g00000OCj2IAAT"),      # all caps: case restored from the suffix
    ("0035g00000ocj2iaat", "0035g00000OCj2IAAT"),      # all lower case, suffix too
    ("00Q5g00000XTPyL", "00Q5g00000XTPyLEAX"),         # a lead
    ("51001", "51001"),                                # not a Salesforce id: unchanged
    ("", None),
])
def test_salesforce_ids_normalise_to_18_characters(given, canonical):
    assert normalize_sf_id(given) == canonical


def test_synthetic_ids_are_valid_and_distinct():
    made = [make_sf_id("006", n) for n in range(1, 500)]
    assert len(set(made)) == 499
    assert all(i.startswith("006") and len(i) == 18 and i[15:] == id_suffix(i[:15]) for i in made)


def test_parse_instants_accepts_every_export_form():
    raw = pd.Series(["2025-01-13T09:05:00.000Z", "2025-01-13T09:05:00Z", "2025-01-13 09:05:00",
                     "2025-01-13T10:05:00+01:00", "2025-01-13T10:05:00+0100", "1736759100000", "1736759100", "", None])
    got = parse_instants(raw, where="x.csv, CreatedDate")
    assert (got.iloc[:7] == pd.Timestamp("2025-01-13T09:05:00Z")).all()
    assert got.iloc[7:].isna().all()


def test_parse_instants_names_file_column_and_rows_of_bad_values():
    raw = pd.Series(["2025-01-13T09:05:00Z", "next tuesday", "2025-13-45"])
    with pytest.raises(CrmInputError, match=r"Task.csv, CreatedDate: 2 value\(s\).*row 2: 'next tuesday'.*row 3"):
        parse_instants(raw, where="Task.csv, CreatedDate")


def test_wall_clock_times_in_a_zone_across_dst():
    notes = DstNotes()
    raw = pd.Series(["2025-03-08 10:00", "2025-03-10 10:00", "2025-03-09 02:30", "2025-11-02 01:30", "03/10/2025 10:00 AM"])
    got = parse_instants(raw, where="calls.csv, Activity date", naive_tz="America/New_York", lenient=True, dst=notes)
    assert list(got) == [pd.Timestamp("2025-03-08T15:00Z"), pd.Timestamp("2025-03-10T14:00Z"),
                         pd.Timestamp("2025-03-09T07:30Z"), pd.Timestamp("2025-11-02T05:30Z"),
                         pd.Timestamp("2025-03-10T14:00Z")]
    assert (notes.ambiguous, notes.nonexistent) == (1, 1)


def test_dates_are_local_days_never_shifted():
    raw = pd.Series(["2025-01-22", "2025-01-22T00:00:00.000Z", ""])
    assert list(parse_dates(raw, where="Task.csv, ActivityDate").fillna("-")) == ["2025-01-22", "2025-01-22", "-"]
    with pytest.raises(CrmInputError, match="ActivityDate"):
        parse_dates(pd.Series(["22/01/2025"]), where="Task.csv, ActivityDate")


def test_local_day_and_local_noon():
    instants = pd.Series(pd.to_datetime(["2025-02-05T00:31:40Z", "2025-02-05T00:31:40Z"], utc=True))
    zones = pd.Series(["America/Chicago", "Europe/Berlin"])
    assert list(local_dates(instants, zones)) == ["2025-02-04", "2025-02-05"]
    noon = local_noon(pd.Series(["2025-03-05", "2025-07-05"]), pd.Series(["Europe/Berlin", "Europe/Berlin"]))
    assert list(noon) == [pd.Timestamp("2025-03-05T11:00Z"), pd.Timestamp("2025-07-05T10:00Z")]


def test_config_defaults_load_and_unknown_keys_fail_loudly(tmp_path):
    cfg = load_config()
    assert cfg.inbound_email == "response" and cfg.deal_amount == "initial" and cfg.source == "defaults"
    with pytest.raises(CrmConfigError, match="unknown key 'rep_time_zone'"):
        config_from_dict({"rep_time_zone": "UTC"})
    with pytest.raises(CrmConfigError, match=r"unknown key salesforce.'outcome_field'"):
        config_from_dict({"salesforce": {"outcome_field": {}}})
    with pytest.raises(CrmConfigError, match="not an IANA time zone"):
        config_from_dict({"portal_timezone": "Eastern"})
    with pytest.raises(CrmConfigError, match="inbound_email"):
        config_from_dict({"inbound_email": "both"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("call_dispositions: [{match: '(unclosed', responses: [connected]}]\n")
    with pytest.raises(CrmConfigError, match="bad regular expression"):
        load_config(bad)
    with pytest.raises(CrmConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_user_sections_merge_key_by_key(tmp_path):
    path = tmp_path / "org.yaml"
    path.write_text("salesforce:\n  no_show_field: Meeting_Outcome__c\n")
    cfg = load_config(path)
    assert cfg.salesforce.no_show_field == "Meeting_Outcome__c"
    assert cfg.salesforce.event_types == {"Demo": "demo", "Workshop": "workshop"}  # default kept
    assert cfg.source == str(path)


@pytest.mark.parametrize("text, responses", [
    ("Connected - discovery booked", ("connected", "meeting_booked")),
    ("Spoke with CFO - budget confirmed", ("connected",)),
    ("Left voicemail", ()),
    ("No answer", ()),
    ("Not connected", ()),
    ("Connected - not interested", ("negative_reply", "connected")),
    ("Meeting booked", ("connected", "meeting_booked")),
    ("Left live message", ()),
    ("Inbound - asked for pricing", ()),
    (None, ()),
])
def test_default_call_disposition_rules(text, responses):
    assert disposition_responses(text, load_config()) == responses


def test_reply_sentiment_and_seniority_rules():
    cfg = load_config()
    assert reply_kind("Please take me off this list. Not interested.", cfg) == "negative_reply"
    assert reply_kind("Sounds good, let's talk Thursday", cfg) == "positive_reply"
    assert reply_kind("<p>Thanks, received.</p>", cfg) == "replied"
    titles = pd.Series(["Chief Risk Officer", "COO", "Vice President Sales", "VP of Manufacturing",
                        "Head of E-commerce", "Directeur Financier", "Directeur commercial", "IT Procurement Manager",
                        "Data Engineer", "", None, "Geschäftsführer"])
    assert list(seniority_of(titles, cfg)) == ["c_level", "c_level", "vp", "vp", "director", "c_level", "director",
                                               "manager", "individual_contributor", "unknown", "unknown", "c_level"]
    assert slug("Food & Beverage") == "food_beverage" == slug("FOOD_BEVERAGE")
    assert slug("Électronique grand public") == "electronique_grand_public"
