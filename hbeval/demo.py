"""A synthetic, realistic HB pilot study with known true effects.

``generate()`` builds every table of the contract in memory; ``write_demo()`` writes them
as a study folder the way offices send them (one ``;``-separated, decimal-comma, CP1252 CSV
with Finnish headers and ``D.M.YYYY`` dates, one ``.xlsx`` workbook, raw ``hetu`` codes and
names that ingestion must pseudonymise and drop) together with ``truth.json``.

The outcome model (all vectorised, so simulation tests can call :func:`simulate_families`
hundreds of times):

* a latent well-being ``θ0 ~ N(μ(x), 1)`` at start, where ``μ`` depends on service line
  and family composition, and choosing HB depends on the same covariates and on ``θ0``
  (so the comparison group is confounded on observables only);
* ``θ1 = ρ θ0 + sqrt(1 - ρ²) u`` with ``ρ = 0.85``, which gives a start–end correlation
  of the Kykyviisari total of ≈ 0.8, as a real test–retest;
* Kykyviisari domain scores ``clip(5.2 + 1.4 θ + λ_j + 0.8 e + τ, 0, 10)`` with one decimal,
  where ``τ`` is the family's treatment effect in points, so the effect on the total is ``τ``
  (up to clipping at 0 and 10, which is rarer than 0.2 % of answers);
* Kompassi sectors ``clip(round(3 + 0.8 θ + ν_j + 0.6 e + 0.55 τ), 1, 5)``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hbeval.diagnose import diagnose
from hbeval.randomisation import plan as analysis_plan
from hbeval.randomisation.design import draw_batch
from hbeval.report.narrative import plan_markdown
from hbeval.study.config import load_config
from hbeval.study.pseudonym import check_hetu, pseudonym
from hbeval.study.scoring import score

SITES = ("Hämeenlinna", "Siun sote")
SERVICE_LINES = ("home_help", "family_work", "family_counselling", "disability_services", "child_welfare_open_care")
SERVICE_LINE_P = (0.25, 0.25, 0.2, 0.15, 0.15)
AREAS = {"Hämeenlinna": ("keskusta", "lammi", "hauho", "tuulos"), "Siun sote": ("joensuu", "kitee", "lieksa", "nurmes")}
REFERRALS = ("arjen_hallinta", "vanhemmuuden_tuki", "lapsen_erityistarpeet", "vammaisuus", "taloudelliset_vaikeudet")
EXCLUSION_REASONS = ("declined", "moved away", "not eligible", "service need ended")
BUDGET_CATEGORIES = ("home_services", "therapy", "leisure", "childcare", "other")
BUDGET_SHARES = (0.35, 0.20, 0.15, 0.20, 0.10)
START = dt.date(2024, 1, 1)
ENROL_DAYS = 547  # 18 months
FOLLOW_UP_DAYS = 365
DEMO_SEED = 20261122
DEMO_KEY = "demo-only-pseudonym-key-replace-in-a-real-study"
#: The demo's allocation key (it keys the registry's chain); public, so the demo folder is byte-identical.
DEMO_ALLOCATION_KEY = "demo-only-allocation-key-replace-in-a-real-study"
DEMO_ASSIGNED_AT = dt.datetime(2025, 7, 1, 9, 0, 0)
RHO = 0.85

# register products by service line: (code, visit_content, annual visits in the
# counterfactual of usual care)
USUAL_SERVICES = {
    "home_help": (("home_help_visit", "support_visit", 18.0), ("social_work_meeting", "guidance", 3.0)),
    "family_work": (("family_work_visit", "support_visit", 16.0), ("social_work_meeting", "assessment", 3.0)),
    "family_counselling": (("family_counselling_visit", "guidance", 10.0), ("phone_call", "guidance", 4.0)),
    "disability_services": (("home_care_visit", "support_visit", 30.0), ("social_work_meeting", "assessment", 2.0)),
    "child_welfare_open_care": (("family_work_visit", "support_visit", 14.0), ("social_work_meeting", "examination", 5.0)),
}
COMMON_SERVICES = (("client_plan", "decision", 0.8), ("statement", "other", 0.3), ("nurse_visit", "examination", 1.5))


@dataclass(frozen=True)
class DemoEffects:
    """True effects in points of the Kykyviisari total (the primary outcome).

    ``frame_shares``, ``teaming`` and ``interaction`` are the cell-model coefficients
    (``frame_only/no_teaming`` is the reference); ``hb`` is the effect of HB itself on a
    ``frame_only/no_teaming`` family against usual care; ``trend`` moves everyone.
    """

    frame_shares: float = 0.25
    teaming: float = 0.35
    interaction: float = 0.10
    hb: float = 0.30
    trend: float = 0.15
    new_clienthood_risk: float = 0.14
    teaming_risk_ratio: float = 0.65
    hb_risk_ratio: float = 0.85
    service_substitution: float = 0.55  # share of usual services a budget replaces
    attrition: float = 0.20

    def margins(self) -> dict[str, float]:
        """The estimands of ``effects.csv`` implied by the cell model (balanced 2×2)."""
        return {
            "frame_shares": self.frame_shares + 0.5 * self.interaction,
            "teaming": self.teaming + 0.5 * self.interaction,
            "frame_shares:teaming": self.interaction,
            "cell:frame_only/teaming": self.teaming,
            "cell:frame_shares/no_teaming": self.frame_shares,
            "cell:frame_shares/teaming": self.frame_shares + self.teaming + self.interaction,
            "pilot_vs_comparison": self.hb + 0.5 * self.frame_shares + 0.5 * self.teaming + 0.25 * self.interaction,
        }


@dataclass
class DemoStudy:
    tables: dict[str, pd.DataFrame]
    truth: dict
    config_toml: str
    hetu: dict[str, str] = field(default_factory=dict)  # client_id -> raw hetu (demo only)


# ------------------------------------------------------------------ families
def _families(n_pilot: int, n_comparison: int, rng: np.random.Generator, n_excluded: int) -> pd.DataFrame:
    n = n_pilot + n_comparison + n_excluded
    site = rng.choice(len(SITES), size=n, p=(0.55, 0.45))
    line = rng.choice(len(SERVICE_LINES), size=n, p=SERVICE_LINE_P)
    n_children = np.clip(rng.poisson(1.3, n) + 1, 1, 8)
    adults = rng.choice([1, 2], size=n, p=(0.35, 0.65))
    youngest = np.clip(np.round(rng.gamma(2.0, 3.0, n)), 0, 17).astype(int)
    area = np.array([AREAS[SITES[s]][k] for s, k in zip(site, rng.integers(0, 4, n))], dtype=object)
    referral = rng.choice(len(REFERRALS), size=n)
    enrol = rng.integers(0, ENROL_DAYS, n)
    # baseline latent well-being depends on observables
    line_mu = np.array([0.1, -0.1, 0.2, -0.2, -0.4])[line]
    mu = line_mu - 0.12 * (n_children - 2) + 0.15 * (adults - 1.5)
    theta0 = mu + rng.standard_normal(n)
    # who chooses HB: the first n_pilot of a ranking on a propensity index
    # (observables and baseline only: ignorability holds given them)
    index = 0.5 * theta0 + 0.4 * (line == 3) - 0.3 * (line == 4) + 0.15 * (site == 0) - 0.1 * n_children + rng.logistic(size=n)
    order = np.argsort(-index, kind="stable")
    group = np.empty(n, dtype=object)
    group[order[: n_pilot + n_excluded]] = "pilot"
    group[order[n_pilot + n_excluded :]] = "comparison"
    pilot_idx = order[: n_pilot + n_excluded]
    excl = rng.choice(pilot_idx, size=n_excluded, replace=False)
    group[excl] = "excluded"
    reason = np.full(n, "", dtype=object)
    reason[excl] = rng.choice(EXCLUSION_REASONS, size=n_excluded)
    return pd.DataFrame(
        {
            "site": np.array(SITES, dtype=object)[site],
            "service_line": np.array(SERVICE_LINES, dtype=object)[line],
            "group": group,
            "exclusion_reason": reason,
            "enrolled_on": [START + dt.timedelta(days=int(d)) for d in enrol],
            "household_size": n_children + adults,
            "n_children": n_children,
            "youngest_child_age": youngest,
            "area": area,
            "referral_reason": np.array(REFERRALS, dtype=object)[referral],
            "_theta0": theta0,
            "_line": line,
        }
    )


def _fake_hetus(n: int, rng: np.random.Generator) -> list[str]:
    """Valid-checksum identity codes in the 900–999 individual-number range (never issued
    to real people as permanent codes)."""
    chars = "0123456789ABCDEFHJKLMNPRSTUVWXY"
    births = [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 365 * 30, n)]
    seen: set[str] = set()
    out = []
    for b in births:
        while True:
            ind = int(rng.integers(900, 1000))
            num = int(f"{b:%d%m%y}{ind:03d}")
            code = f"{b:%d%m%y}{'-' if b.year < 2000 else 'A'}{ind:03d}{chars[num % 31]}"
            if code not in seen:
                seen.add(code)
                out.append(code)
                break
    return out


FIRST_NAMES = ("Aino", "Eino", "Helmi", "Väinö", "Sofia", "Leo", "Olivia", "Onni", "Ella", "Elias", "Aada", "Oliver")
SURNAMES = ("Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Mäkelä", "Hämäläinen", "Laine", "Heikkinen", "Koskinen")


def simulate_families(
    n_pilot: int = 400,
    n_comparison: int = 600,
    seed: int = DEMO_SEED,
    effects: DemoEffects | None = None,
    n_excluded: int | None = None,
    strata: tuple[str, ...] = ("site", "service_line"),
) -> pd.DataFrame:
    """Family-level truth: covariates, group, arms and Kykyviisari/Kompassi domain scores.

    One row per family with ``client_id``, the ``clients.csv`` columns, ``frame_arm``,
    ``teaming_arm``, ``stratum`` (pilot families), ``tau`` (the family's true effect in
    points), ``kyky_<item>_start/_end`` and ``kompassi_<item>_start/_end`` (NaN when not
    answered) and ``observed_end`` (False when lost to follow-up).
    """
    eff = effects or DemoEffects()
    rng = np.random.default_rng(seed)
    if n_excluded is None:
        n_excluded = max(1, round(0.06 * n_pilot))
    fam = _families(n_pilot, n_comparison, rng, n_excluded)
    n = len(fam)
    fam.insert(0, "client_id", [f"F{seed % 100000:05d}{i:05d}" for i in range(n)])
    pilot = (fam["group"] == "pilot").to_numpy()
    # arms: exactly what `hbeval assign --all` draws with the same seed
    arms = draw_batch(fam.loc[pilot], list(strata), seed)
    fam = fam.merge(arms[["client_id", "frame_arm", "teaming_arm", "stratum"]], on="client_id", how="left")
    fs = (fam["frame_arm"] == "frame_shares").to_numpy(float)
    tm = (fam["teaming_arm"] == "teaming").to_numpy(float)
    tau = eff.trend + pilot * (eff.hb + eff.frame_shares * fs + eff.teaming * tm + eff.interaction * fs * tm)
    fam["tau"] = tau
    theta0 = fam["_theta0"].to_numpy()
    theta1 = RHO * theta0 + np.sqrt(1 - RHO**2) * rng.standard_normal(n)
    # Kykyviisari: 5 scales + overall + life satisfaction, 0–10 with one decimal
    kyky_items = ("osallisuus", "mieli", "arki", "taidot", "keho", "kokonaistilanne", "elamaan_tyytyvaisyys")
    lam = np.array([0.3, -0.2, 0.1, 0.4, -0.3, 0.0, 0.2])
    komp_items = ("tyoelama", "terveys", "psyykkinen_hyvinvointi", "arjen_hallinta", "talous", "osallisuus")
    nu = np.array([-0.4, 0.1, -0.1, 0.2, -0.3, 0.1])
    # attrition: more likely when worse off at start, slightly less with teaming
    p_loss = 1 / (1 + np.exp(-(np.log(eff.attrition / (1 - eff.attrition)) - 0.35 * theta0 - 0.25 * tm)))
    observed_end = rng.random(n) >= p_loss
    missing_start = rng.random(n) < 0.03
    fam["observed_end"] = observed_end
    for t, theta, extra in (("start", theta0, 0.0), ("end", theta1, tau)):
        for j, it in enumerate(kyky_items):
            s = np.clip(np.round(5.2 + 1.4 * theta + lam[j] + 0.8 * rng.standard_normal(n) + extra, 1), 0, 10)
            s[rng.random(n) < 0.03] = np.nan  # item non-response
            s[(missing_start if t == "start" else ~observed_end)] = np.nan
            fam[f"kyky_{it}_{t}"] = s
        for j, it in enumerate(komp_items):
            s = np.clip(np.round(3 + 0.8 * theta + nu[j] + 0.6 * rng.standard_normal(n) + 0.55 * extra), 1, 5)
            s[rng.random(n) < 0.03] = np.nan
            s[(missing_start if t == "start" else ~observed_end)] = np.nan
            fam[f"kompassi_{it}_{t}"] = s
    # client satisfaction at end (pilot and comparison), 1–5
    sat_mu = 3.4 + 0.3 * theta1 + 0.2 * pilot + 0.25 * tm + 0.1 * fs
    for it in ("kohtelu", "vaikutusmahdollisuudet", "tiedonsaanti", "palvelujen_sopivuus", "kokonaisarvio"):
        s = np.clip(np.round(sat_mu + 0.7 * rng.standard_normal(n)), 1, 5)
        s[~observed_end | (rng.random(n) < 0.04)] = np.nan
        fam[f"satisfaction_{it}_end"] = s
    excluded = (fam["group"] == "excluded").to_numpy()
    for c in [c for c in fam.columns if c.endswith(("_start", "_end")) and c != "observed_end"]:
        fam.loc[excluded, c] = np.nan
    return fam


# ------------------------------------------------------------------ tables
def _measurements(fam: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    enrol = pd.to_datetime(fam["enrolled_on"])
    start_day = enrol + pd.to_timedelta(rng.integers(0, 21, len(fam)), unit="D")
    end_day = enrol + pd.to_timedelta(rng.integers(330, 364, len(fam)), unit="D")
    for col in [c for c in fam.columns if c.endswith(("_start", "_end")) and c.split("_", 1)[0] in ("kyky", "kompassi", "satisfaction")]:
        prefix, rest = col.split("_", 1)
        item, tp = rest.rsplit("_", 1)
        instrument = {"kyky": "kykyviisari"}.get(prefix, prefix)
        ok = fam[col].notna().to_numpy()
        when = (start_day if tp == "start" else end_day)[ok]
        rows.append(
            pd.DataFrame(
                {
                    "client_id": fam["client_id"].to_numpy()[ok],
                    "instrument": instrument,
                    "timepoint": tp,
                    "measured_on": when.dt.date.to_numpy(),
                    "item": item,
                    "score": fam[col].to_numpy()[ok],
                }
            )
        )
    m = pd.concat(rows, ignore_index=True)
    order = {"kykyviisari": 0, "kompassi": 1, "satisfaction": 2}
    m["_o"] = m["instrument"].map(order)
    m["_t"] = (m["timepoint"] == "end").astype(int)
    return m.sort_values(["client_id", "_o", "_t"], kind="mergesort").drop(columns=["_o", "_t"]).reset_index(drop=True)


def _spread_dates(enrol: np.ndarray, counts: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Repeat each family ``counts`` times with a date uniform in ``[enrol+lo, enrol+hi)``."""
    idx = np.repeat(np.arange(len(counts)), counts)
    off = rng.integers(lo, hi, len(idx))
    return idx, enrol[idx] + off.astype("timedelta64[D]")


def _service_events(fam: pd.DataFrame, eff: DemoEffects, rng: np.random.Generator, cw: pd.DataFrame) -> pd.DataFrame:
    enrol = pd.to_datetime(fam["enrolled_on"]).to_numpy().astype("datetime64[D]")
    pilot = (fam["group"] == "pilot").to_numpy()
    theta0 = fam["_theta0"].to_numpy()
    need = np.exp(-0.25 * theta0)  # worse-off families use more services
    frames = []
    for period, lo, hi in (("pre", -FOLLOW_UP_DAYS, 0), ("follow", 0, FOLLOW_UP_DAYS)):
        for line_i, line in enumerate(SERVICE_LINES):
            sel = (fam["_line"] == line_i).to_numpy()
            for code, content, rate in USUAL_SERVICES[line]:
                lam = rate * need * sel
                if period == "follow":
                    lam = lam * np.where(pilot, 1 - eff.service_substitution, 1.0)
                counts = rng.poisson(lam)
                idx, dates = _spread_dates(enrol, counts, lo, hi, rng)
                frames.append(pd.DataFrame({"i": idx, "event_date": dates, "service_code": code, "quantity": 1.0, "visit_content": content}))
        for code, content, rate in COMMON_SERVICES:
            counts = rng.poisson(rate * need)
            idx, dates = _spread_dates(enrol, counts, lo, hi, rng)
            frames.append(pd.DataFrame({"i": idx, "event_date": dates, "service_code": code, "quantity": 1.0, "visit_content": content}))
        # purchased services with an invoice (direct cost)
        counts = rng.poisson(0.6 * need * np.where(pilot & (period == "follow"), 0.5, 1.0))
        idx, dates = _spread_dates(enrol, counts, lo, hi, rng)
        frames.append(
            pd.DataFrame(
                {"i": idx, "event_date": dates, "service_code": "purchased_service", "quantity": 1.0, "visit_content": "other",
                 "cost_eur": np.round(rng.gamma(2.0, 350.0, len(idx)), 2)}
            )
        )
    # placements that follow a new child-welfare clienthood: institutional care days
    plc = cw[cw["event"] == "placement_start"]
    if len(plc):
        i = fam.reset_index().set_index("client_id").loc[plc["client_id"], "index"].to_numpy()
        days = rng.integers(14, 120, len(plc)).astype(float)
        frames.append(
            pd.DataFrame({"i": i, "event_date": pd.to_datetime(plc["date"]).to_numpy().astype("datetime64[D]"),
                          "service_code": "cw_institution_day", "quantity": days, "visit_content": "other"})
        )
    ev = pd.concat(frames, ignore_index=True)
    ev["client_id"] = fam["client_id"].to_numpy()[ev["i"].to_numpy()]
    ev["event_date"] = pd.to_datetime(ev["event_date"]).dt.date
    ev = ev.sort_values(["client_id", "event_date", "service_code"], kind="mergesort").reset_index(drop=True)
    return ev[["client_id", "event_date", "service_code", "quantity", "visit_content", "cost_eur"]]


def _budgets(fam: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = fam[fam["group"] == "pilot"].reset_index(drop=True)
    n = len(p)
    enrol = pd.to_datetime(p["enrolled_on"])
    frame = np.round(rng.lognormal(np.log(5200), 0.45, n), -1)
    fs = (p["frame_arm"] == "frame_shares").to_numpy()
    # telling the shares makes the first proposal closer to a confirmable budget
    revisions = rng.poisson(np.where(fs, 0.6, 1.2))
    unconfirmed = rng.random(n) < 0.03
    proposed_on = enrol + pd.to_timedelta(rng.integers(7, 30, n), unit="D")
    confirmed_on = proposed_on + pd.to_timedelta(5 + 9 * revisions + rng.integers(0, 10, n), unit="D")
    rows = []
    spend = []
    for k, cat in enumerate(BUDGET_CATEGORIES):
        share = np.clip(BUDGET_SHARES[k] + rng.normal(0, np.where(fs, 0.03, 0.08), n), 0.0, 0.8)
        proposed = np.round(frame * share * rng.uniform(0.92, 1.08, n), 0)
        change = np.where(revisions > 0, rng.normal(0, np.where(fs, 0.05, 0.12), n) * proposed, 0.0)
        confirmed = np.round(np.maximum(proposed + change, 0), 0)
        rows.append(
            pd.DataFrame(
                {
                    "client_id": p["client_id"],
                    "frame_eur": frame,
                    "category": cat,
                    "told_share": np.where(fs, BUDGET_SHARES[k], np.nan),
                    "proposed_eur": proposed,
                    "confirmed_eur": np.where(unconfirmed, np.nan, confirmed),
                    "proposed_on": proposed_on.dt.date,
                    "confirmed_on": np.where(unconfirmed, None, confirmed_on.dt.date),
                    "revisions": revisions,
                }
            )
        )
        # monthly payment commitments over the follow-up, ~85 % utilisation
        months = np.where(unconfirmed, 0, rng.integers(8, 12, n))
        idx = np.repeat(np.arange(n), months)
        m_no = np.concatenate([np.arange(m) for m in months]) if len(idx) else np.array([], int)
        dates = (confirmed_on.to_numpy()[idx].astype("datetime64[D]") + (m_no * 30 + 3).astype("timedelta64[D]"))
        keep = dates < (enrol.to_numpy()[idx].astype("datetime64[D]") + np.timedelta64(FOLLOW_UP_DAYS, "D"))
        amt = np.round(confirmed[idx] * 0.85 / np.maximum(months[idx], 1) * rng.uniform(0.8, 1.2, len(idx)), 2)
        spend.append(
            pd.DataFrame({"client_id": p["client_id"].to_numpy()[idx][keep], "date": pd.to_datetime(dates[keep]).date,
                          "category": cat, "provider_id": [f"Y{int(x):04d}" for x in rng.integers(1, 60, keep.sum())],
                          "amount_eur": amt[keep]})
        )
    b = pd.concat(rows).sort_values(["client_id", "category"], kind="mergesort").reset_index(drop=True)
    s = pd.concat(spend).sort_values(["client_id", "date", "category"], kind="mergesort").reset_index(drop=True)
    s = s[s["amount_eur"] > 0]
    return b, s


def _income_support(fam: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    enrol = pd.to_datetime(fam["enrolled_on"]).to_numpy().astype("datetime64[D]")
    receives = rng.random(len(fam)) < 0.3
    frames = []
    for kind, months, mean in (("basic", 24, 520.0), ("supplementary", 3, 180.0), ("preventive", 1, 400.0)):
        counts = np.where(receives, rng.binomial(months, 0.6 if kind == "basic" else 0.5, len(fam)), 0)
        idx, dates = _spread_dates(enrol, counts, -FOLLOW_UP_DAYS, FOLLOW_UP_DAYS, rng)
        frames.append(pd.DataFrame({"i": idx, "date": dates, "kind": kind, "amount_eur": np.round(rng.gamma(4, mean / 4, len(idx)), 2)}))
    d = pd.concat(frames, ignore_index=True)
    d["client_id"] = fam["client_id"].to_numpy()[d["i"]]
    d["date"] = pd.to_datetime(d["date"]).dt.date
    return d.sort_values(["client_id", "date", "kind"], kind="mergesort").reset_index(drop=True)[["client_id", "date", "kind", "amount_eur"]]


def _worker_time(fam: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    enrol = pd.to_datetime(fam["enrolled_on"]).to_numpy().astype("datetime64[D]")
    pilot = (fam["group"] == "pilot").to_numpy()
    frames = []
    for role, activity, rate, mins, who in (
        ("hb_worker", "budget_planning", 6.0, 60, pilot),
        ("hb_worker", "follow_up", 5.0, 45, pilot),
        ("secretary", "budget_administration", 8.0, 20, pilot),
        ("social_worker", "client_work", 4.0, 45, np.ones(len(fam), bool)),
    ):
        counts = np.where(who, rng.poisson(rate, len(fam)), 0)
        idx, dates = _spread_dates(enrol, counts, 0, FOLLOW_UP_DAYS, rng)
        frames.append(pd.DataFrame({"i": idx, "date": dates, "role": role, "activity": activity,
                                    "minutes": np.round(rng.gamma(4, mins / 4, len(idx)), 0)}))
    d = pd.concat(frames, ignore_index=True)
    d["client_id"] = fam["client_id"].to_numpy()[d["i"]]
    d["date"] = pd.to_datetime(d["date"]).dt.date
    d = d[d["minutes"] > 0]
    return d.sort_values(["client_id", "date", "role"], kind="mergesort").reset_index(drop=True)[["client_id", "date", "role", "activity", "minutes"]]


def _teaming(fam: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    t = fam[(fam["group"] == "pilot") & (fam["teaming_arm"] == "teaming")].reset_index(drop=True)
    enrol = pd.to_datetime(t["enrolled_on"])
    rows = []
    for phase, lo, hi, fidelity in (("before_start", 5, 25, 0.92), ("after_start", 60, 120, 0.85), ("evaluation", 300, 360, 0.8)):
        held = rng.random(len(t)) < fidelity
        inv = rng.integers(2, 6, len(t))
        rows.append(
            pd.DataFrame(
                {"client_id": t["client_id"], "date": (enrol + pd.to_timedelta(rng.integers(lo, hi, len(t)), unit="D")).dt.date,
                 "phase": phase, "providers_invited": inv, "providers_present": rng.binomial(inv, 0.75),
                 "minutes": rng.choice([45, 60, 75, 90], len(t))}
            )[held]
        )
    return pd.concat(rows).sort_values(["client_id", "date"], kind="mergesort").reset_index(drop=True)


def _child_welfare(fam: pd.DataFrame, eff: DemoEffects, rng: np.random.Generator) -> pd.DataFrame:
    enrol = pd.to_datetime(fam["enrolled_on"]).to_numpy().astype("datetime64[D]")
    pilot = (fam["group"] == "pilot").to_numpy()
    tm = (fam["teaming_arm"] == "teaming").to_numpy()
    need = np.exp(-0.3 * fam["_theta0"].to_numpy())
    risk = np.clip(eff.new_clienthood_risk * need * np.where(pilot, eff.hb_risk_ratio, 1.0) * np.where(tm, eff.teaming_risk_ratio, 1.0), 0, 0.9)
    new = rng.random(len(fam)) < risk
    frames = []
    # notifications before and after; new clienthoods and placements in follow-up
    counts = rng.poisson(0.3 * need)
    idx, dates = _spread_dates(enrol, counts, -FOLLOW_UP_DAYS, FOLLOW_UP_DAYS, rng)
    frames.append(pd.DataFrame({"i": idx, "date": dates, "event": "notification"}))
    idx = np.flatnonzero(new)
    nd = enrol[idx] + rng.integers(20, 300, len(idx)).astype("timedelta64[D]")
    frames.append(pd.DataFrame({"i": idx, "date": nd, "event": "new_clienthood"}))
    placed = rng.random(len(idx)) < 0.25
    pd_ = nd[placed] + rng.integers(5, 40, placed.sum()).astype("timedelta64[D]")
    keep = pd_ < enrol[idx[placed]] + np.timedelta64(FOLLOW_UP_DAYS, "D")
    frames.append(pd.DataFrame({"i": idx[placed][keep], "date": pd_[keep], "event": "placement_start"}))
    d = pd.concat(frames, ignore_index=True)
    d["client_id"] = fam["client_id"].to_numpy()[d["i"]]
    d["date"] = pd.to_datetime(d["date"]).dt.date
    return d.sort_values(["client_id", "date", "event"], kind="mergesort").reset_index(drop=True)[["client_id", "date", "event"]]


DEMO_TOML = """\
# A synthetic study made by `hbeval demo`; no real person is in it.
[study]
name = "{name}"
price_year = 2024
follow_up_days = {follow_up_days}
seed = {seed}

[design]
strata = ["site", "service_line"]
assignment = "batch"
# demo only: a real study keeps its allocation key outside the study folder (key_env)
key_file = "allocation.key"

[outcomes]
primary = "kykyviisari_total"
mic = 1.0
subgroups = ["service_line"]   # pre-specified: the effect of each margin by service line, with a heterogeneity test

[privacy]
min_cell = 5
# demo only: a real study keeps its key outside the study folder (key_env)
key_file = "pseudonym.key"

[economics]
wtp_eur = [0, 250, 500, 1000, 2000, 5000]
discount_rate = 0.035
horizon_years = 1
deadweight = 0.0
attribution = 0.0
drop_off = 0.0

[plan]
# true: hbeval assign refuses to start before `hbeval plan` has sealed the analysis plan
required = false

[diagnose]
# the design diagnosis sealed in the analysis plan (few simulations: the demo stays quick)
sims = 200
"""


def _checked_hetu(h: str) -> str:
    code = check_hetu(h)
    if code is None:
        raise RuntimeError(f"internal error: the demo drew an invalid identity code (length {len(h)})")
    return code


def generate(n_pilot: int = 400, n_comparison: int = 600, seed: int = DEMO_SEED, effects: DemoEffects | None = None,
             name: str = "HB demo study") -> DemoStudy:
    """Every table of a demo study, in canonical form (``client_id`` already pseudonymised)."""
    eff = effects or DemoEffects()
    fam = simulate_families(n_pilot, n_comparison, seed, eff)
    rng = np.random.default_rng([seed, 1])
    key = DEMO_KEY.encode()
    hetus = _fake_hetus(len(fam), rng)
    ids = [pseudonym(_checked_hetu(h), key) for h in hetus]
    # the i-th simulated family gets the i-th smallest pseudonym, so that families sort the
    # same way under both ids and `hbeval assign --all` on the written study draws exactly
    # the arms simulated here
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ids = [ids[k] for k in order]
    hetus = [hetus[k] for k in order]
    fam["client_id"] = ids
    cw = _child_welfare(fam, eff, rng)
    tables: dict[str, pd.DataFrame] = {}
    tables["clients"] = fam[["client_id", "site", "service_line", "group", "exclusion_reason", "enrolled_on", "household_size",
                             "n_children", "youngest_child_age", "area", "referral_reason"]].copy()
    a = fam[fam["group"] == "pilot"][["client_id", "frame_arm", "teaming_arm", "stratum", "enrolled_on"]].rename(columns={"enrolled_on": "assigned_on"})
    tables["assignments"] = a.sort_values("client_id").reset_index(drop=True)
    tables["measurements"] = _measurements(fam, rng)
    tables["service_events"] = _service_events(fam, eff, rng, cw)
    tables["budgets"], tables["budget_spending"] = _budgets(fam, rng)
    tables["income_support"] = _income_support(fam, rng)
    tables["worker_time"] = _worker_time(fam, rng)
    tables["teaming_meetings"] = _teaming(fam, rng)
    tables["child_welfare"] = cw
    new_ch = cw[cw["event"] == "new_clienthood"]["client_id"].unique()
    fam["new_clienthood"] = fam["client_id"].isin(new_ch)
    truth = {
        "seed": seed,
        "n_pilot": int((fam["group"] == "pilot").sum()),
        "n_comparison": int((fam["group"] == "comparison").sum()),
        "n_excluded": int((fam["group"] == "excluded").sum()),
        "primary_outcome": "kykyviisari_total",
        "effects_kykyviisari_total": eff.margins(),
        "cell_model": asdict(eff),
        "notes": [
            "Effects are in points of the Kykyviisari total (0-10); the randomised contrasts are exact up to clipping "
            "of domain scores at 0 and 10 (under 0.2 % of answers).",
            "Kompassi sectors carry 0.55 x the same latent shift, then integer rounding and clipping to 1-5: their true "
            "effects are approximately 0.55 x the above, attenuated by rounding.",
            "pilot_vs_comparison is the ATT for pilot families; choice of HB depends on observables and the baseline only.",
            "New child-welfare clienthood risk: base x need x hb_risk_ratio (pilot) x teaming_risk_ratio (teaming).",
        ],
        "attrition_rate_realised": float(1 - fam.loc[fam["group"] != "excluded", "observed_end"].mean()),
        "new_clienthood_rate": {g: float(fam.loc[fam["group"] == g, "new_clienthood"].mean()) for g in ("pilot", "comparison")},
    }
    # scored by the same rule the analysis uses (hbeval.study.scoring, the 80 % rule included)
    kt = score(tables["measurements"])[["kykyviisari_total_start", "kykyviisari_total_end"]].dropna()
    truth["start_end_correlation_kykyviisari_total"] = round(float(np.corrcoef(kt.iloc[:, 0], kt.iloc[:, 1])[0, 1]), 4)
    toml = DEMO_TOML.format(name=name, seed=seed, follow_up_days=FOLLOW_UP_DAYS)
    return DemoStudy(tables=tables, truth=truth, config_toml=toml, hetu=dict(zip(ids, hetus)))


# ------------------------------------------------------------------ writing
_FI_EVENT_HEADERS = {"client_id": "asiakasnumero", "event_date": "käyntipäivä", "service_code": "palvelukoodi",
                     "quantity": "määrä", "visit_content": "käynnin sisältö", "cost_eur": "kustannus eur"}
_FI_VISIT = {"assessment": "arviointi", "examination": "tutkimus", "support_visit": "tukikäynti", "guidance": "ohjaus",
             "decision": "päätös", "other": "muu"}
_FIXED_TIME = (2024, 1, 1, 0, 0, 0)


def _csv_bytes(df: pd.DataFrame, **kw) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", **kw)
    return buf.getvalue().encode("utf-8")


def _xlsx_bytes(df: pd.DataFrame, sheet: str) -> bytes:
    """An .xlsx workbook whose bytes depend only on the data (fixed zip and core times)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(df.columns))
    for row in df.itertuples(index=False):
        ws.append([None if (isinstance(v, float) and np.isnan(v)) else v for v in row])
    fixed = dt.datetime(*_FIXED_TIME)
    wb.properties.created = fixed
    wb.properties.modified = fixed
    raw = io.BytesIO()
    wb.save(raw)
    src = zipfile.ZipFile(io.BytesIO(raw.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            zi = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps the save time here
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>2024-01-01T00:00:00Z\g<2>", data)
            z.writestr(zi, data)
    return out.getvalue()


def seal_demo_plan(study: Path) -> str:
    """``hbeval plan`` on the demo study, dated :data:`DEMO_ASSIGNED_AT` (byte-identical for a seed);
    returns the plan's SHA-256."""
    cfg = load_config(study)
    doc = analysis_plan.build_plan(cfg, diagnose(study), DEMO_ASSIGNED_AT.date())
    return analysis_plan.seal(study, doc, plan_markdown, key=cfg.allocation_key(study))


def write_demo(out: str | Path, n_pilot: int = 400, n_comparison: int = 600, seed: int = DEMO_SEED,
               effects: DemoEffects | None = None) -> DemoStudy:
    """Write a demo study folder (byte-identical for the same arguments)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    demo = generate(n_pilot, n_comparison, seed, effects)
    t = demo.tables
    rng = np.random.default_rng([seed, 2])
    files: dict[str, bytes] = {}
    # clients: as the register exports it, with identity codes and names
    cl = t["clients"].copy()
    cl.insert(0, "henkilotunnus", cl["client_id"].map(demo.hetu))
    cl.insert(1, "nimi", [f"{FIRST_NAMES[a]} {SURNAMES[b]}" for a, b in zip(rng.integers(0, len(FIRST_NAMES), len(cl)),
                                                                           rng.integers(0, len(SURNAMES), len(cl)))])
    cl = cl.drop(columns=["client_id"])
    files["clients.csv"] = _csv_bytes(cl)
    files["measurements.csv"] = _csv_bytes(t["measurements"])
    # service events: Finnish Excel's CSV (semicolons, decimal commas, CP1252, D.M.YYYY)
    ev = t["service_events"].copy()
    ev["event_date"] = [f"{d.day}.{d.month}.{d.year}" for d in ev["event_date"]]
    ev["visit_content"] = ev["visit_content"].map(_FI_VISIT)
    ev = ev.rename(columns=_FI_EVENT_HEADERS)
    buf = io.StringIO()
    ev.to_csv(buf, index=False, sep=";", decimal=",", lineterminator="\r\n")
    files["service_events.csv"] = buf.getvalue().encode("cp1252")
    files["budgets.csv"] = _csv_bytes(t["budgets"])
    files["budget_spending.csv"] = _csv_bytes(t["budget_spending"])
    # income support comes from the benefits register, keyed by identity code, with a BOM
    inc = t["income_support"].copy()
    inc.insert(0, "henkilötunnus", inc["client_id"].map(demo.hetu))
    inc = inc.drop(columns=["client_id"])
    files["income_support.csv"] = b"\xef\xbb\xbf" + _csv_bytes(inc)
    files["worker_time.xlsx"] = _xlsx_bytes(t["worker_time"], "worker_time")
    files["teaming_meetings.csv"] = _csv_bytes(t["teaming_meetings"])
    files["child_welfare.csv"] = _csv_bytes(t["child_welfare"])
    files["study.toml"] = demo.config_toml.encode("utf-8")
    files["pseudonym.key"] = DEMO_KEY.encode("utf-8") + b"\n"
    files["allocation.key"] = DEMO_ALLOCATION_KEY.encode("utf-8") + b"\n"
    files["truth.json"] = (json.dumps(demo.truth, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    # the design stage: study.toml and clients.csv exist, no outcome yet; the analysis plan is
    # sealed (with its diagnosis) before the first family is randomised
    first = ("study.toml", "pseudonym.key", "allocation.key", "clients.csv")
    for name in first:
        (out / name).write_bytes(files[name])
    seal_demo_plan(out)
    for name, data in files.items():
        if name not in first:
            (out / name).write_bytes(data)
    # randomise as a pilot coordinator would: `hbeval assign --all` writes the allocation
    # registry and assignments.csv, at a fixed time so the folder stays byte-identical
    from hbeval.randomisation.allocate import assign_all

    drawn = assign_all(out, now=DEMO_ASSIGNED_AT)
    shutil.rmtree(out / ".hbeval", ignore_errors=True)  # the ingestion cache assign_all made
    want = t["assignments"].set_index("client_id")[["frame_arm", "teaming_arm"]].sort_index()
    got = drawn.set_index("client_id")[["frame_arm", "teaming_arm"]].sort_index()
    if not want.equals(got):  # pragma: no cover - a broken invariant, not bad input
        raise RuntimeError("hbeval assign --all did not reproduce the demo's simulated arms")
    demo.tables["assignments"] = pd.read_csv(out / "assignments.csv", dtype=str)
    return demo
