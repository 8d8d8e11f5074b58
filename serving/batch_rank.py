"""A rep's daily list in batch: ``/rank`` for every open deal of a dataset at one moment.

``activity-scorer rank --data DIR --at DATE --out FILE`` builds, for each deal open at ``DATE``
(or each deal of ``--deals``), the request a CRM would send at that moment (the deal as known
then, its account and contacts, and as history the deal's activities, stages and outcomes and
the account contacts' recent activities and responses, all strictly before ``DATE``), lets the
service's own ranking code (:class:`serving.scorer.Scorer`, in-process) propose and order the
candidates, and writes the best ``top_k`` per deal.

The request builder is the one the benchmarks use too, so what they measure is what this writes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.build import to_records

logger = logging.getLogger(__name__)

HISTORY_CONTACT_DAYS = 90  # other deals' activities of the account's contacts sent as history
OUTPUT_COLUMNS = ["deal_id", "rank", "type", "contact_id", "personalization", "is_automated", "effect",
                  "effect_low", "effect_high", "p_outcome", "p_negative"]
EXTRA_COLUMNS = ["rep_id", "overlap", "net_effect", "guardrail", "ranked_by", "at"]


class RankError(ValueError):
    """Batch ranking cannot run: bad output path, deals file, date or model (the message names it)."""


class RequestBuilder:
    """``/rank`` requests for a deal at a moment, from a dataset, as a CRM would send them."""

    def __init__(self, dataset) -> None:  # noqa: ANN001
        acts = dataset[c.ACTIVITIES].sort_values(c.OCCURRED_AT, kind="stable")
        self.acts = acts
        self.acts_by_deal = {k: g for k, g in acts.groupby(c.DEAL_ID, sort=False)}
        # contact_id and a contact's account_id are optional in the contract (flat imports may lack them)
        self.acts_by_contact = ({k: g for k, g in acts.groupby(c.CONTACT_ID, sort=False)}
                                if c.CONTACT_ID in acts.columns else {})
        resp = dataset.get(c.RESPONSES)
        self.responses = resp.set_index(c.ACTIVITY_ID, drop=False) if resp is not None else None
        stages = dataset.get(c.DEAL_STAGES)
        self.stages = {k: g for k, g in stages.groupby(c.DEAL_ID, sort=False)} if stages is not None else {}
        out = dataset.get(c.OUTCOMES)
        self.outcomes = {k: g for k, g in out.groupby(c.DEAL_ID, sort=False)} if out is not None else {}
        self.deals = dataset[c.DEALS].set_index(c.DEAL_ID, drop=False)
        contacts = dataset.get(c.CONTACTS)
        if contacts is None:
            contacts = pd.DataFrame({c.CONTACT_ID: pd.Series(dtype="string"), c.ACCOUNT_ID: pd.Series(dtype="string")})
        self.contacts = contacts.set_index(c.CONTACT_ID, drop=False)
        self.contacts_by_account = ({k: g for k, g in contacts.groupby(c.ACCOUNT_ID, sort=False)}
                                    if c.ACCOUNT_ID in contacts.columns else {})
        accounts = dataset.get(c.ACCOUNTS)
        self.accounts = accounts.set_index(c.ACCOUNT_ID, drop=False) if accounts is not None else None

    def account_contacts(self, deal_id: str) -> list[str]:
        """Every contact of the deal's account (ids)."""
        acc = self.deals.at[deal_id, c.ACCOUNT_ID] if c.ACCOUNT_ID in self.deals.columns else None
        g = self.contacts_by_account.get(acc) if acc is not None and not pd.isna(acc) else None
        return [] if g is None else list(g[c.CONTACT_ID])

    def body(self, deal_id: str, at: pd.Timestamp, fallback_contact: str | None = None) -> dict[str, Any]:
        """The request body (JSON-ready) for ``deal_id`` at ``at``; facts strictly before ``at`` only."""
        deal = self.deals.loc[deal_id]
        account_id = deal.get(c.ACCOUNT_ID)
        deal_acts = self.acts_by_deal.get(deal_id, self.acts.iloc[:0])
        deal_acts = deal_acts[(deal_acts[c.OCCURRED_AT] < at).to_numpy(bool)]
        parts = [deal_acts]
        since = at - pd.Timedelta(days=HISTORY_CONTACT_DAYS)
        for cid in self.account_contacts(deal_id):
            g = self.acts_by_contact.get(cid)
            if g is not None:
                parts.append(g[((g[c.OCCURRED_AT] < at) & (g[c.OCCURRED_AT] >= since)).to_numpy(bool)])
        hist = pd.concat(parts).drop_duplicates(c.ACTIVITY_ID).sort_values(c.OCCURRED_AT, kind="stable")
        if c.CONTACT_ID in deal_acts.columns:
            touched = deal_acts[(deal_acts[c.TYPE] != "none").to_numpy(bool)
                                & deal_acts[c.CONTACT_ID].notna().to_numpy(bool)]
            contact_id = touched[c.CONTACT_ID].iloc[-1] if len(touched) else fallback_contact
        else:
            contact_id = fallback_contact
        history: dict[str, list] = {c.ACTIVITIES: to_records(hist)}
        if self.responses is not None:
            ids = [i for i in hist[c.ACTIVITY_ID] if i in self.responses.index]
            r = self.responses.loc[ids] if ids else self.responses.iloc[:0]
            history[c.RESPONSES] = to_records(r[(r[c.OCCURRED_AT] < at).to_numpy(bool)])
        st = self.stages.get(deal_id)
        if st is not None:
            history[c.DEAL_STAGES] = to_records(st[(st[c.ENTERED_AT] < at).to_numpy(bool)])
        oc = self.outcomes.get(deal_id)
        if oc is not None:
            history[c.OUTCOMES] = to_records(oc[(oc[c.OCCURRED_AT] < at).to_numpy(bool)])
        contacts = self.contacts_by_account.get(account_id) if account_id is not None else None
        if contacts is not None:
            history[c.CONTACTS] = to_records(contacts)
        body: dict[str, Any] = {
            "at": at.isoformat(),
            "deal": to_records(deal.drop([c.CLOSED_AT, c.WON], errors="ignore").to_frame().T)[0],
            "history": history,
            "top_k": 500,
            "explain": False,
        }
        if contact_id is not None and contact_id in self.contacts.index:
            body["contact"] = to_records(self.contacts.loc[[contact_id]])[0]
        if self.accounts is not None and account_id in self.accounts.index:
            body["account"] = to_records(self.accounts.loc[[account_id]])[0]
        return body

    def open_deals(self, at: pd.Timestamp) -> list[str]:
        """Deals created before ``at`` and not closed by then (no close date, stage or outcome before it)."""
        d = self.deals
        ok = np.ones(len(d), dtype=bool)
        if c.CREATED_AT in d.columns:
            created = d[c.CREATED_AT]
            ok &= (created.isna() | (created < at)).to_numpy(bool)
        if c.CLOSED_AT in d.columns:
            closed = d[c.CLOSED_AT]
            ok &= (closed.isna() | (closed > at)).to_numpy(bool)
        out = []
        for deal_id in d.index[ok]:
            st = self.stages.get(deal_id)
            if st is not None:
                before = st[(st[c.ENTERED_AT] < at).to_numpy(bool)]
                if len(before) and int(before.sort_values(c.ENTERED_AT).iloc[-1][c.STAGE_ORDER]) == c.CLOSED_LOST_ORDER:
                    continue
            out.append(str(deal_id))
        return out


def read_deals_file(path: Path) -> list[str]:
    """Deal ids from a CSV with a ``deal_id`` column, or a text file with one id per line.

    Raises:
        RankError: unreadable, empty, or a CSV without ``deal_id``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise RankError(f"--deals {path}: cannot read it ({err})") from None
    lines = [ln.strip() for ln in text.splitlines()]
    if not any(lines):
        raise RankError(f"--deals {path}: no deal ids in it")
    if path.suffix.lower() == ".csv" or "," in lines[0]:
        header = [h.strip() for h in lines[0].split(",")]
        if c.DEAL_ID not in header:
            raise RankError(f"--deals {path}: line 1 has no '{c.DEAL_ID}' column (columns: {', '.join(header)})")
        k = header.index(c.DEAL_ID)
        ids = []
        for n, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            cells = line.split(",")
            if k >= len(cells) or not cells[k].strip():
                raise RankError(f"--deals {path}: line {n} has no {c.DEAL_ID}")
            ids.append(cells[k].strip())
        return ids
    return [ln for ln in lines if ln]


@dataclass
class BatchRankResult:
    out: Path
    at: pd.Timestamp
    deals: int
    rows: int
    ranked_by: str
    model: str
    skipped_closed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "at": self.at.isoformat(), "deals": self.deals, "rows": self.rows,
                "ranked_by": self.ranked_by, "model": self.model, "skipped_closed": self.skipped_closed,
                "seconds": round(self.seconds, 2)}


def rank_dataset(dataset, scorer, at: pd.Timestamp, top_k: int, deal_ids: list[str] | None = None,  # noqa: ANN001
                 progress=None) -> tuple[pd.DataFrame, list[str]]:  # noqa: ANN001
    """Rank every open deal (or ``deal_ids``) at ``at``; returns the rows and the listed deals skipped as closed.

    Raises:
        RankError: a listed deal id the dataset does not have (names them).
    """
    from serving.schemas import RankRequest

    builder = RequestBuilder(dataset)
    open_now = builder.open_deals(at)
    skipped: list[str] = []
    if deal_ids is not None:
        unknown = [d for d in deal_ids if d not in builder.deals.index]
        if unknown:
            raise RankError(f"--deals: {len(unknown)} deal id(s) not in the dataset: {', '.join(unknown[:10])}"
                            + (" ..." if len(unknown) > 10 else ""))
        open_set = set(open_now)
        skipped = [d for d in deal_ids if d not in open_set]
        targets = [d for d in dict.fromkeys(deal_ids) if d in open_set]
    else:
        targets = open_now
    rows: list[dict[str, Any]] = []
    for k, deal_id in enumerate(targets):
        if progress is not None and k % 200 == 0:
            progress(f"ranking deal {k + 1:,} of {len(targets):,}")
        body = builder.body(deal_id, at)
        body["top_k"] = top_k
        request = RankRequest.model_validate_json(json.dumps(body, default=str))
        response = scorer.rank(request)
        for r, entry in enumerate(response.ranked, start=1):
            a = entry.activity
            rows.append({
                "deal_id": deal_id, "rank": r, "type": a.get(c.TYPE), "contact_id": a.get(c.CONTACT_ID),
                "personalization": a.get(c.PERSONALIZATION), "is_automated": bool(a.get(c.IS_AUTOMATED, False)),
                "effect": entry.effect, "effect_low": entry.effect_low, "effect_high": entry.effect_high,
                "p_outcome": entry.p_outcome, "p_negative": entry.p_negative, "rep_id": a.get(c.REP_ID),
                "overlap": entry.overlap, "net_effect": entry.net_effect, "guardrail": entry.guardrail,
                "ranked_by": response.ranked_by, "at": response.at,
            })
    frame = pd.DataFrame(rows, columns=OUTPUT_COLUMNS + EXTRA_COLUMNS)
    return frame, skipped


def write_ranking(frame: pd.DataFrame, out: Path) -> None:
    """CSV or Parquet by the file's extension."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False, lineterminator="\n", float_format="%.6g")
    else:
        frame.to_parquet(out, index=False)


def run_batch_rank(data: Path, out: Path, at: pd.Timestamp, bundle_dir: Path, model_label: str, top_k: int = 5,
                   deals_file: Path | None = None, policy=None, progress=None) -> BatchRankResult:  # noqa: ANN001
    """Load the dataset and the bundle, rank, write ``out``.

    Raises:
        RankError: bad output path, deals file or model.
        features.dataset.DatasetError: the dataset breaks the contract.
    """
    from features.dataset import load_dataset
    from serving.model_store import ModelLoadError, load_bundle_dir
    from serving.scorer import Scorer

    t0 = time.perf_counter()
    if Path(out).suffix.lower() not in (".csv", ".parquet"):
        raise RankError(f"--out {out}: the file name must end in .csv or .parquet")
    if top_k < 1:
        raise RankError(f"--top-k {top_k}: must be at least 1")
    deal_ids = read_deals_file(deals_file) if deals_file is not None else None
    try:
        model = load_bundle_dir(bundle_dir, source=model_label)
    except ModelLoadError as err:
        raise RankError(f"--model {model_label}: {err}") from None
    if progress:
        progress("reading the dataset")
    dataset = load_dataset(Path(data))
    if c.DEALS not in dataset.tables:
        raise RankError(f"--data {data}: the dataset has no deals table, so there are no deals to rank")
    scorer = Scorer(model, policy=policy)  # the service's defaults: the same candidates /rank proposes
    frame, skipped = rank_dataset(dataset, scorer, at, top_k, deal_ids, progress)
    write_ranking(frame, Path(out))
    ranked_by = str(frame["ranked_by"].iloc[0]) if len(frame) else ("effect" if model.effects else "ranking")
    if skipped:
        logger.warning("%d listed deal(s) were not open at %s and were not ranked: %s", len(skipped), at.isoformat(),
                       ", ".join(skipped[:10]))
    return BatchRankResult(Path(out), at, int(frame["deal_id"].nunique()) if len(frame) else 0, len(frame),
                           ranked_by, model_label, skipped, time.perf_counter() - t0)
