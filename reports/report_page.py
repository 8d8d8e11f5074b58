"""The manager report as one self-contained HTML page, rendered from the JSON document.

The page shows the figures of :func:`reports.report.build_report` and nothing else, so the
page and the ``--json`` file always agree. Model figures are written in italics with their
90% interval and called estimates; figures that need the effects model say that they wait
for it when the bundle has none.
"""

from __future__ import annotations

import logging
from typing import Any

from reports import html as h
from reports import plots

logger = logging.getLogger(__name__)

WAIT_TEXT = ("Waits for effect estimates: {what}. The model bundle used here has no effects model, so this figure "
             "is left out rather than guessed.")


def _est(row: dict, key: str, fmt=h.number) -> str:  # noqa: ANN001
    return h.estimate(row.get(f"{key}_estimate"), row.get(f"{key}_low"), row.get(f"{key}_high"), fmt)


def _p2(v: Any) -> str:
    return h.number(v, 2)


def _p3(v: Any) -> str:
    return h.number(v, 3)


def _pp(v: Any) -> str:
    """An effect on a probability in percentage points."""
    return f"{100 * v:+.2f} pts" if h._finite(v) else "–"


def _date(iso: str | None) -> str:
    return (iso or "")[:10]


def _short_week(iso: str) -> str:
    """``2025-10-06`` -> ``Oct 06`` (axis labels)."""
    import datetime as dt

    try:
        return dt.date.fromisoformat(iso).strftime("%b %d")
    except ValueError:
        return iso


def _rep_columns(with_effects: bool) -> list[h.Column]:
    cols = [
        h.Column("rep_id", "rep", text=True),
        h.Column("team", "team", text=True),
        h.Column("activities", "activities", h.count, title="activities in the window (waits excluded)"),
        h.Column("hours", "hours of work", h.number, title="recorded durations, else the per-type minutes below"),
    ]
    if with_effects:
        cols += [
            h.Column("caused_per_100", "advances caused per 100 activities (estimate)",
                     render=lambda r: _est(r, "caused_per_100", _p2)),
            h.Column("caused_per_hour", "advances caused per hour of work (estimate)",
                     render=lambda r: _est(r, "caused_per_hour", _p3)),
            h.Column("wasted_share_estimate", "no better than waiting (estimate)", h.percent,
                     title="share of activities whose 90% effect interval contains zero"),
        ]
    cols += [
        h.Column("with_output", "with an output", h.count),
        h.Column("output_rate", "output rate", h.percent),
        h.Column("advanced", "followed by an advance", h.count,
                 title="activities after which the deal advanced within the outcome horizon (closed labels)"),
        h.Column("outcome_rate", "outcome rate", h.percent, title="followed by an advance / activities with a closed label"),
        h.Column("deal_advances", "deal advances", h.count, title="stage advances on the rep's deals in the window"),
        h.Column("recorded_outcomes", "recorded outcomes", h.count, title="outcome rows on the rep's deals in the window"),
        h.Column("automated_share", "automated", h.percent),
        h.Column("negatives_per_1000", "negatives per 1,000 touches", h.number),
    ]
    return cols


def _summary(doc: dict) -> tuple[str, str, str]:
    t, w, eff = doc["totals"], doc["window"], doc["effects"]
    with_effects = eff["available"]
    items = [
        ("activities", h.count(t["activities"]), f"{t['reps_active']:,} reps, {t['deals']:,} deals; {t['waits']:,} waits"),
        ("hours of work", h.number(t["hours"]), "recorded durations or per-type assumptions"),
        ("output rate", h.percent(t["output_rate"]), f"{t['with_output']:,} activities with a reply, connect or meeting"),
        ("outcome rate", h.percent(t["outcome_rate"]), f"{t['advanced']:,} of {t['labelled']:,} with a closed label"),
        ("deal advances", h.count(t["deal_advances"]), f"plus {t['recorded_outcomes']:,} recorded outcomes"),
        ("negatives per 1,000", h.number(t["negatives_per_1000"]), f"{t['negatives']:,} unsubscribes or angry replies"),
        ("automated", h.percent(t["automated_share"]), f"{t['automated']:,} activities"),
    ]
    if with_effects:
        items.append(("advances caused per 100 activities (estimate)",
                      h.estimate(t.get("caused_per_100_estimate"), t.get("caused_per_100_low"),
                                 t.get("caused_per_100_high"), _p2),
                      f"all activities: {h.number(t.get('caused_estimate'))} "
                      f"({h.number(t.get('caused_low'))} to {h.number(t.get('caused_high'))})"))
    parts = [h.cards(items)]
    reps = [r for r in doc["by_rep"] if r.get("activities")]
    if reps:
        top_volume = max(reps, key=lambda r: (r["activities"], r["rep_id"]))
        lines = [f"Most activities: {top_volume['rep_id']} ({top_volume['activities']:,})."]
        if with_effects:
            scored = [r for r in reps if r.get("caused_per_100_estimate") is not None and r["activities"] >= 30]
            if scored:
                best = max(scored, key=lambda r: r["caused_per_100_estimate"])
                worst = min(scored, key=lambda r: r["caused_per_100_estimate"])
                lines.append(f"Most advances caused per 100 activities (estimate): {best['rep_id']} "
                             f"({best['caused_per_100_estimate']:.2f}); fewest: {worst['rep_id']} "
                             f"({worst['caused_per_100_estimate']:.2f}).")
        parts.append(h.paragraph(" ".join(lines)))
    if with_effects:
        parts.append(h.note(f"Effect estimates come from {eff['source']}. Figures in italics are estimates; the "
                            f"figures in brackets are their 90% intervals. An activity's effect is how much it raised "
                            f"the chance that its deal advances; summed over activities it reads as advances caused. "
                            f"Compare: the window recorded {t['deal_advances']:,} stage advances and "
                            f"{t['recorded_outcomes']:,} outcomes on these deals; estimates far above that deserve "
                            f"doubt."))
    else:
        parts.append(h.note("No effect estimates: " + eff["source"] + ". These figures wait for them: "
                            + "; ".join(eff["waiting_figures"]) + ". Every count and rate below is exact.", "wait"))
    incomplete = f"Outcome labels close {w['outcome_horizon_days']} days after an activity: activities after " \
                 f"{_date(w['labels_closed_before'])} are not yet counted in outcome rates."
    parts.append(h.paragraph(incomplete))
    return h.section("summary", "At a glance", *parts,
                     intro=f"Window {_date(w['since'])} to {_date(w['until'])} (end excluded). "
                           "Are reps measured on what their activities accomplish, or on how many they log?")


def _reps(doc: dict) -> tuple[str, str, str]:
    with_effects = doc["effects"]["available"]
    reps = doc["by_rep"]
    pts = [{"x": r["activities"], "y": r["deal_advances"], "label": r["rep_id"],
            "tip": f"{r['rep_id']}: {r['activities']:,} activities, {r['deal_advances']:,} deal advances"}
           for r in reps if r.get("activities")]
    figs = [h.figure(plots.scatter(pts, "Volume vs deal advances, per rep", "activities in the window",
                                   "deal advances on the rep's deals"),
                     "Each dot is a rep. Reps to the right log more; reps higher up saw more of their deals advance.")]
    if with_effects:
        pe = [{"x": r["activities"], "y": r.get("caused_per_100_estimate"), "low": r.get("caused_per_100_low"),
               "high": r.get("caused_per_100_high"), "label": r["rep_id"],
               "tip": f"{r['rep_id']}: {r['activities']:,} activities; advances caused per 100 (estimate) "
                      f"{h.number(r.get('caused_per_100_estimate'), 2)} "
                      f"({h.number(r.get('caused_per_100_low'), 2)} to {h.number(r.get('caused_per_100_high'), 2)})"}
              for r in reps if r.get("activities")]
        figs.append(h.figure(plots.scatter(pe, "Volume vs advances caused per 100 activities (estimate)",
                                           "activities in the window", "advances caused per 100 (estimate)",
                                           zero_line=True),
                             "Each dot is a rep; the line through it is its 90% interval. High volume does not "
                             "mean more accomplished per activity."))
    key = "caused_per_100_estimate" if with_effects else "activities"
    ordered = sorted(reps, key=lambda r: (-(r.get(key) if r.get(key) is not None else float("-inf")), r["rep_id"]))
    idle = [r["rep_id"] for r in reps if not r.get("activities")]
    parts = [h.plots(*figs),
             h.table(_rep_columns(with_effects), ordered, table_id="reps-table",
                     caption=("sorted by advances caused per 100 activities (estimate)" if with_effects
                              else "sorted by activities (no effect estimates to sort by)"))]
    if idle:
        parts.append(h.note(f"{len(idle)} rep(s) of the reps table had no activity in this window: "
                            + ", ".join(idle[:20]) + ("…" if len(idle) > 20 else "") + ". They are listed with zero "
                            "counts and no rates."))
    return h.section("reps", "Reps: activity vs accomplishment", *parts,
                     intro="Compare reps on what their work accomplishes per activity and per hour, not on volume.")


def _types(doc: dict) -> tuple[str, str, str]:
    with_effects = doc["effects"]["available"]
    cols = _rep_columns(with_effects)
    cols = [h.Column("type", "activity type", text=True)] + [c for c in cols if c.key not in ("rep_id", "team",
                                                                                                  "deal_advances",
                                                                                                  "recorded_outcomes")]
    rows = doc["by_type_stage"]
    types = sorted({r["type"] for r in rows})
    stages = sorted({r["stage"] for r in rows})
    idx = {(r["type"], r["stage"]): r for r in rows}
    if with_effects:
        vals = [[(idx.get((t, st)) or {}).get("mean_effect_estimate") if (idx.get((t, st)) or {}).get(
            "activities", 0) >= 30 else None for st in stages] for t in types]
        hm = plots.heatmap(types, stages, vals, "Effect by type and stage (estimate, change in P(advance))",
                           row_label="type", col_label="deal stage", diverging=True, value_format=_pp,
                           counts=[[(idx.get((t, st)) or {}).get("activities", 0) for st in stages] for t in types])
        cap = ("Average estimated effect of one activity against waiting, in percentage points of the chance the deal "
               "advances; blue helps, orange hurts; cells with fewer than 30 activities are n/a.")
    else:
        vals = [[(idx.get((t, st)) or {}).get("outcome_rate") if (idx.get((t, st)) or {}).get(
            "labelled", 0) >= 30 else None for st in stages] for t in types]
        hm = plots.heatmap(types, stages, vals, "Outcome rate by type and stage (observed, not an effect)",
                           row_label="type", col_label="deal stage", value_format=h.percent,
                           counts=[[(idx.get((t, st)) or {}).get("labelled", 0) for st in stages] for t in types])
        cap = ("Observed share of activities followed by an advance. This is not the effect of the activity: busy deals "
               "advance anyway. The effect heat map waits for effect estimates.")
    return h.section("types", "Activity types", h.table(cols, doc["by_type"]), h.plots(h.figure(hm, cap)),
                     intro="The same figures per activity type, and how each type does at each stage of a deal.")


def _trend(doc: dict) -> tuple[str, str, str]:
    weeks = doc["by_week"]
    x = [_short_week(w["week"]) for w in weeks]
    first_open = next((i for i, w in enumerate(weeks) if not w.get("labels_complete")), None)
    figs = [
        h.figure(plots.lines(x, {"activities": [w["activities"] for w in weeks]}, "Volume per week",
                             "activities", width=430), "Activities per week (week starting Monday)."),
        h.figure(plots.lines(x, {"with an output": [w["with_output"] for w in weeks],
                                 "negatives": [w["negatives"] for w in weeks]}, "Outputs per week", "count",
                             width=430), "Activities with a reply, connect or meeting booked; negatives are "
                                         "unsubscribes and angry replies."),
        h.figure(plots.lines(x, {"followed by an advance": [w["advanced"] for w in weeks],
                                 "deal advances": [w["deal_advances"] for w in weeks],
                                 "recorded outcomes": [w["recorded_outcomes"] for w in weeks]},
                             "Outcomes per week", "count", width=430, dashed_from=first_open),
                 "Hollow points: weeks whose outcome labels are not all closed yet (they will still grow)."),
    ]
    cols = [h.Column("week", "week of", text=True), h.Column("activities", "activities", h.count),
            h.Column("with_output", "with an output", h.count), h.Column("output_rate", "output rate", h.percent),
            h.Column("advanced", "followed by an advance", h.count), h.Column("outcome_rate", "outcome rate", h.percent),
            h.Column("deal_advances", "deal advances", h.count), h.Column("recorded_outcomes", "recorded outcomes", h.count),
            h.Column("automated_share", "automated", h.percent),
            h.Column("negatives_per_1000", "negatives per 1,000", h.number)]
    if doc["effects"]["available"]:
        cols.append(h.Column("caused", "advances caused (estimate)", render=lambda r: h.estimate(
            r.get("caused_estimate"), r.get("caused_low"), r.get("caused_high"))))
    cols.append(h.Column("labels_complete", "labels closed", lambda v: "yes" if v else "not yet"))
    return h.section("trend", "Weekly trend", h.plots(*figs), h.details("the weekly figures", h.table(cols, weeks)),
                     intro="Is the team doing more, or accomplishing more?")


def _wasted(doc: dict) -> tuple[str, str, str]:
    w = doc["wasted_effort"]
    parts = []
    ind = w["indistinguishable_from_waiting"]
    parts.append(h.subheading("Activities no better than waiting"))
    if ind.get("waits_for_effects"):
        parts.append(h.note(WAIT_TEXT.format(what="the share of activities whose effect cannot be told apart from "
                                                  "waiting, by type, rep and stage"), "wait"))
    else:
        parts.append(h.paragraph(f"{h.percent(ind['share_estimate'])} of activities ({ind['activities']:,}) have a 90% "
                                 f"effect interval that contains zero (estimate): the model cannot tell them apart "
                                 f"from doing nothing."))
        cols = [h.Column("activities", "activities", h.count),
                h.Column("wasted_share_estimate", "no better than waiting (estimate)", h.percent),
                h.Column("extrapolated", "extrapolated estimates", h.count)]
        parts.append(h.plots(
            h.table([h.Column("type", "type", text=True), *cols], ind["by_type"]),
            h.table([h.Column("stage", "stage", text=True), *cols], ind["by_stage"]),
        ))
        parts.append(h.details("by rep", h.table([h.Column("rep_id", "rep", text=True), *cols], ind["by_rep"])))
    cp = w["contact_pressure"]
    parts.append(h.subheading("Over-contacted contacts"))
    cols = [h.Column("touches_before_7d", "earlier touches to the contact in 7 days", h.count),
            h.Column("activities", "activities", h.count), h.Column("output_rate", "output rate", h.percent),
            h.Column("negatives_per_1000", "negatives per 1,000", h.number)]
    if cp.get("waits_for_effects"):
        parts.append(h.note(WAIT_TEXT.format(what="the number of touches in 7 days from which one more touch no "
                                                  "longer pays"), "wait"))
    else:
        cols.append(h.Column("mean_effect", "effect of one more touch (estimate)", render=lambda r: h.estimate(
            r.get("mean_effect_estimate"), r.get("mean_effect_low"), r.get("mean_effect_high"), _pp)))
        parts.append(h.paragraph(cp.get("threshold_note", "")))
        oc = cp.get("over_contacted") or {}
        if oc.get("contacts"):
            parts.append(h.paragraph(f"{oc['contacts']:,} contacts received {oc['activities']:,} touches past that "
                                     f"point in the window."))
            parts.append(h.table([h.Column("rep_id", "rep", text=True),
                                  h.Column("activities", "touches past the point", h.count),
                                  h.Column("contacts", "contacts", h.count)], oc["by_rep"], max_rows=10))
    parts.append(h.table(cols, cp["by_touches_in_7d"], caption=cp.get("note", "")))
    seq = w["automated_sequences"]
    parts.append(h.subheading("Automated sequences with more negatives than outputs"))
    parts.append(h.paragraph(f"{seq['more_negatives_than_outputs']:,} of {seq['sequences']:,} automated sequences "
                             f"({seq['definition']}) drew more unsubscribes and angry replies than replies, connects "
                             f"and meetings, over {seq['touches_in_those']:,} touches."))
    if seq["by_rep"]:
        parts.append(h.table([h.Column("rep_id", "rep", text=True), h.Column("sequences", "sequences", h.count),
                              h.Column("more_negatives_than_outputs", "more negatives than outputs", h.count),
                              h.Column("touches", "automated touches", h.count)], seq["by_rep"], max_rows=10))
        parts.append(h.details("the worst sequences", h.table(
            [h.Column("rep_id", "rep", text=True), h.Column("contact_id", "contact", text=True),
             h.Column("touches", "touches", h.count), h.Column("outputs", "outputs", h.count),
             h.Column("negatives", "negatives", h.count), h.Column("first_at", "first", _date, text=False),
             h.Column("last_at", "last", _date)], seq["worst"])))
    return h.section("wasted", "Wasted effort", *parts,
                     intro="Where effort goes without moving deals, and where it annoys customers.")


def _better(doc: dict) -> tuple[str, str, str]:
    b = doc["what_would_work_better"]
    if b.get("waits_for_effects"):
        return h.section("better", "What would work better", h.note(WAIT_TEXT.format(
            what="the activity types and seniorities with the largest effects per stage, the deals where the next-best "
                 "activity differs most from what the rep does, and the gain from replacing the weakest quarter of "
                 "last month's activities"), "wait"))
    parts = [h.subheading("Per stage: what moves deals most (estimates)")]
    rows = []
    for st in b["by_stage"]:
        def fmt_list(items, key):  # noqa: ANN001, ANN202
            return "<br>".join(f"{h.esc(i[key])} " + h.estimate(i["mean_effect_estimate"], i["low"], i["high"], _pp)
                               for i in items) or "–"
        rows.append({"stage": st["stage"], "activities": st["activities"],
                     "types": fmt_list(st.get("top_types", []), "type"),
                     "seniorities": fmt_list(st.get("top_seniorities", []), "seniority")})
    parts.append(h.table([h.Column("stage", "stage", text=True), h.Column("activities", "activities", h.count),
                          h.Column("types", "activity types with the largest effect", text=True,
                                   render=lambda r: r["types"]),
                          h.Column("seniorities", "seniorities reached with the largest effect", text=True,
                                   render=lambda r: r["seniorities"])], rows,
                         caption="average estimated effect of one activity against waiting, percentage points; "
                                 "at least 30 activities each"))
    parts.append(h.subheading("Deals where the next-best activity differs most from what the rep has been doing"))
    parts.append(h.paragraph(b.get("next_best_note", "")))
    parts.append(h.table([
        h.Column("deal_id", "deal", text=True), h.Column("rep_id", "rep", text=True), h.Column("stage", "stage", text=True),
        h.Column("usual_type", "rep's usual activity here", text=True),
        h.Column("practice", "its effect (estimate)", render=lambda r: h.estimate(
            r.get("practice_effect"), r.get("practice_low"), r.get("practice_high"), _pp)),
        h.Column("best_type", "next best", text=True),
        h.Column("best", "its effect (estimate)", render=lambda r: h.estimate(
            r.get("best_effect"), r.get("best_low"), r.get("best_high"), _pp)),
        h.Column("gap_estimate", "difference (estimate)", _pp)], b.get("next_best_by_deal", [])))
    tp = b.get("top_picks_instead") or {}
    parts.append(h.subheading("If last month's weakest quarter had been the model's top picks"))
    if tp.get("activities_replaced"):
        parts.append(h.cards([("extra deal advances (estimate)",
                               h.estimate(tp["gain_estimate"], tp["gain_low"], tp["gain_high"], _p2),
                               f"replacing {tp['activities_replaced']:,} of {tp['last_month_activities']:,} activities "
                               f"since {_date(tp.get('from'))}")]))
        picks = ", ".join(f"{k} {v:,}" for k, v in tp.get("picks_by_type", {}).items())
        parts.append(h.paragraph(f"The replacements by type: {picks}. Assumptions:"))
        parts.append(h.bullets(tp.get("assumptions", [])))
    else:
        parts.append(h.note(tp.get("note", "no activities to replace"), "info"))
    return h.section("better", "What would work better", *parts,
                     intro="Where the same effort, spent differently, would move more deals (model estimates).")


def _calibration(doc: dict) -> tuple[str, str, str]:
    cal = doc["calibration"]
    svg = plots.calibration(cal.get("bins", []), "Calibration of the model on closed labels")
    sample = (f" (a random sample of {cal['scored']:,} of them)" if cal.get("scored", cal.get("labelled"))
              != cal.get("labelled") else "")
    text = (f"On {cal.get('labelled', 0):,} activities of the window whose outcome is known{sample}, the model "
            f"predicted an "
            f"average chance of advance of {h.percent(cal.get('mean_predicted'))}; {h.percent(cal.get('observed_rate'))} "
            f"advanced. Average gap between predicted and observed (ECE): {h.number(cal.get('ece'), 3)}."
            if cal.get("labelled") else "No activity of the window has a closed outcome label yet.")
    m = doc["model"]
    return h.section("calibration", "Can the model's probabilities be trusted?",
                     h.plots(h.figure(svg, "Points on the dashed line mean the predicted chance matches what "
                                           "happened.")), h.paragraph(text),
                     intro=f"Model: {m.get('label', '')}.")


def _method(doc: dict) -> tuple[str, str, str]:
    defs = [f"{k}: {v}" for k, v in doc["definitions"].items()]
    a = doc["assumptions"]
    minutes = ", ".join(f"{k} {v:g}" for k, v in a["minutes_by_type"].items())
    cols = [h.Column("rep_id", "rep", text=True), h.Column("type", "type", text=True),
            *[c for c in _rep_columns(doc["effects"]["available"])
              if c.key not in ("rep_id", "team", "deal_advances", "recorded_outcomes")]]
    return h.section("method", "Definitions and assumptions", h.bullets(defs),
                     h.paragraph(f"Hours of work: {a['note']}. Minutes per activity: {minutes}; other types "
                                 f"{a['minutes_other_types']:g}; automated {a['minutes_automated']:g}."),
                     h.details("every rep and activity type", h.table(cols, doc["by_rep_type"])),
                     h.paragraph("The JSON file (--json) holds every figure, including each rep's activity types "
                                 "per week."))


def render(doc: dict) -> str:
    """The report document as one self-contained HTML page."""
    w, m = doc["window"], doc["model"]
    sections = [_summary(doc), _reps(doc), _types(doc), _trend(doc), _wasted(doc), _better(doc), _calibration(doc),
                _method(doc)]
    subtitle = [f"{_date(w['since'])} to {_date(w['until'])} · model {m.get('label', '')} · "
                f"generated {doc['generated_at'][:16].replace('T', ' ')} UTC"]
    return h.page(doc["title"], subtitle, sections,
                  footer="activity-scorer report: counts are exact; figures in italics are model estimates with "
                         "90% intervals. Works offline: no scripts, no external files.")
