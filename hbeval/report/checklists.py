"""Reporting checklists with where the report answers each item.

* CONSORT 2025 (Hopewell et al., BMJ 2025;389:e081123; 30 numbered items, some with
  sub-items), item wording paraphrased;
* the CONSORT extension for factorial trials (Kahan et al., JAMA 2023;330:2106–2114), its
  modified items paraphrased and attached to the CONSORT 2025 item they extend;
* CHEERS 2022 is ``results/cheers.csv`` (written by :mod:`hbeval.economics.cheers`), shown by
  :func:`cheers_display`.

``where`` names the report section (a key of :data:`hbeval.report.render.SECTIONS`), or is empty
when only the evaluators can answer the item (registration, funding, discussion ...);
``status`` is ``answered``, ``partly`` or ``authors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from hbeval.report import i18n

# (item, part, topic, paraphrased requirement, report sections, status)
CONSORT_2025: tuple[tuple[str, str, str, str, tuple[str, ...], str], ...] = (
    ("1a", "Title and abstract", "Title", "Identification as a randomised trial.", ("summary",), "partly"),
    ("1b", "Title and abstract", "Abstract", "Structured summary of design, methods, results and conclusions.", ("summary",), "partly"),
    ("2", "Open science", "Trial registration", "Name of the registry, identifying number and date of registration.", (), "authors"),
    ("3", "Open science", "Protocol and SAP", "Where the protocol and statistical analysis plan can be accessed.",
     ("deviations", "repro"), "partly"),
    ("4", "Open science", "Data sharing", "Where de-identified data, statistical code and other materials can be accessed.",
     ("repro",), "partly"),
    ("5a", "Open science", "Funding", "Sources of funding and other support, and the funders' role.", (), "authors"),
    ("5b", "Open science", "Conflicts of interest", "Financial and other conflicts of interest of the authors.", (), "authors"),
    ("6", "Introduction", "Background and rationale", "Scientific background and rationale.", (), "authors"),
    ("7", "Introduction", "Objectives", "Specific objectives related to benefits and harms.", ("outcomes",), "partly"),
    ("8", "Methods", "Patient and public involvement", "Details of patient or public involvement in design, conduct and reporting.",
     (), "authors"),
    ("9", "Methods", "Trial design", "Type of trial, allocation ratio and framework (superiority, equivalence ...).",
     ("flow", "baseline"), "answered"),
    ("10", "Methods", "Changes to trial design", "Important changes after the trial commenced, with reasons.", ("deviations",),
     "partly"),
    ("11", "Methods", "Trial setting", "Settings and locations where the trial was conducted.", ("baseline",), "partly"),
    ("12a", "Methods", "Eligibility criteria", "Eligibility criteria for participants.", ("flow",), "partly"),
    ("12b", "Methods", "Eligibility of sites and providers", "If applicable, eligibility criteria for sites and those delivering the interventions.",
     (), "authors"),
    ("13", "Methods", "Intervention and comparator", "The interventions and comparator in enough detail to allow replication.",
     ("process",), "partly"),
    ("14", "Methods", "Outcomes", "Prespecified primary and secondary outcomes with measurement variable, analysis metric, aggregation and time point.",
     ("outcomes", "repro"), "answered"),
    ("15", "Methods", "Harms", "How harms were defined and assessed.", ("process",), "partly"),
    ("16a", "Methods", "Sample size", "How the sample size was determined, with its assumptions.", ("power",), "answered"),
    ("16b", "Methods", "Interim analyses", "Interim analyses and stopping guidelines.", (), "authors"),
    ("17a", "Methods", "Sequence generation", "Who generated the allocation sequence and the method used.", ("baseline", "repro"), "answered"),
    ("17b", "Methods", "Type of randomisation", "Type of randomisation and any restriction (stratification, blocking, block size).",
     ("baseline", "repro"), "answered"),
    ("18", "Methods", "Allocation concealment", "Mechanism used to implement the sequence and steps taken to conceal it.",
     ("baseline",), "partly"),
    ("19", "Methods", "Implementation", "Whether those who enrolled and assigned participants had access to the sequence.", (), "authors"),
    ("20a", "Methods", "Blinding", "Who was blinded after assignment.", (), "authors"),
    ("20b", "Methods", "Blinding", "If blinded, how, and the similarity of interventions.", (), "authors"),
    ("21a", "Methods", "Statistical methods", "Methods used to compare groups for primary and secondary outcomes, including harms.",
     ("outcomes", "interaction"), "answered"),
    ("21b", "Methods", "Analysis population", "Who is included in each analysis and in which group.", ("flow", "outcomes"), "answered"),
    ("21c", "Methods", "Missing data", "How missing data were handled.", ("attrition",), "answered"),
    ("21d", "Methods", "Additional analyses", "Methods of additional (subgroup, sensitivity) analyses, prespecified or post hoc.",
     ("attrition", "interaction", "comparison"), "answered"),
    ("22a", "Results", "Participant flow", "For each group, numbers randomised, receiving the intervention and analysed (flow diagram).",
     ("flow",), "answered"),
    ("22b", "Results", "Losses and exclusions", "For each group, losses and exclusions after randomisation, with reasons.",
     ("flow", "attrition"), "answered"),
    ("23a", "Results", "Recruitment", "Dates defining the periods of recruitment and follow-up.", ("repro",), "partly"),
    ("23b", "Results", "Trial end", "If relevant, why the trial ended or was stopped.", (), "authors"),
    ("24a", "Results", "Intervention delivery", "Interventions as actually administered, adherence and fidelity.", ("process", "flow"), "answered"),
    ("24b", "Results", "Concomitant care", "Concomitant care received during the trial in each group.", ("costs",), "partly"),
    ("25", "Results", "Baseline data", "A table of baseline characteristics for each group.", ("baseline",), "answered"),
    ("26", "Results", "Outcomes and estimation", "For each outcome and group: numbers analysed, results, effect size and its precision; absolute and relative effects for binary outcomes.",
     ("outcomes", "process"), "answered"),
    ("27", "Results", "Harms", "All important harms or unintended effects in each group.", ("process",), "partly"),
    ("28", "Results", "Ancillary analyses", "Other analyses performed, distinguishing prespecified from post hoc.",
     ("attrition", "comparison", "interaction"), "answered"),
    ("29", "Discussion", "Interpretation", "Interpretation consistent with the results, balancing benefits and harms.", ("summary",), "partly"),
    ("30", "Discussion", "Limitations", "Limitations: sources of bias, imprecision, generalisability, multiplicity.",
     ("attrition", "comparison"), "partly"),
)

# Factorial extension (Kahan et al. 2023), keyed to the CONSORT item it modifies.
FACTORIAL: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("1a", "Title", "Identify the trial as a factorial randomised trial.", ("summary",), "partly"),
    ("1b", "Abstract", "Report the results of each factor (and the interaction if of interest) in the abstract.", ("summary",), "answered"),
    ("6", "Rationale", "Rationale for the factorial design and whether an interaction was hypothesised.", ("interaction",), "partly"),
    ("7", "Objectives", "Objectives for each factor and for the interaction.", ("outcomes", "interaction"), "partly"),
    ("9", "Design", "Type of factorial design (2×2), allocation ratio, and whether comparisons are at the margins or inside the table.",
     ("interaction", "flow"), "answered"),
    ("14", "Outcomes", "Outcomes for each comparison.", ("outcomes",), "answered"),
    ("16a", "Sample size", "Sample size per comparison and whether the trial was powered to detect an interaction.", ("power",),
     "answered"),
    ("17b", "Randomisation", "How participants were randomised to the factorial cells.", ("baseline",), "answered"),
    ("21a", "Statistical methods", "Methods for each comparison: margins or inside the table, how the interaction was estimated and handled.",
     ("interaction", "outcomes"), "answered"),
    ("22a", "Participant flow", "Numbers randomised, receiving treatment and analysed for each cell of the factorial.", ("flow",), "answered"),
    ("25", "Baseline data", "Baseline characteristics for each cell (or each factor's arms).", ("baseline",), "answered"),
    ("26", "Outcomes and estimation", "Results for each comparison with its precision, and the estimate of the interaction with its interval; cell-level results.",
     ("outcomes", "interaction"), "answered"),
    ("29", "Interpretation", "Interpretation accounting for the interaction and for the comparisons made.", ("interaction",), "partly"),
)


#: CHEERS 2022 item -> the report sections that answer it (empty: only the authors can answer it).
CHEERS_SECTIONS: dict[int, tuple[str, ...]] = {
    1: ("summary",), 2: ("summary",), 3: (), 4: ("deviations", "repro"), 5: ("flow", "baseline"), 6: ("baseline",),
    7: ("flow", "cea"), 8: ("costs",), 9: ("costs", "rosi"), 10: ("rosi",), 11: ("outcomes", "cea"), 12: ("outcomes",),
    13: ("cea",), 14: ("costs", "quality"), 15: ("costs", "repro"), 16: ("cea",), 17: ("cea", "rosi"),
    18: ("costs", "cea"), 19: (), 20: ("cea", "rosi"), 21: (), 22: ("rosi", "repro"), 23: ("costs", "cea", "rosi"),
    24: ("cea", "rosi"), 25: (), 26: ("comparison",), 27: (), 28: (),
}


@dataclass(frozen=True)
class SectionRefs:
    """Where a checklist item is answered: report sections (keys of
    :data:`hbeval.report.render.SECTIONS`). :func:`hbeval.report.render.table_html` draws each as a link
    to the section with its page number in the PDF; as text it reads as the sections' titles."""

    keys: tuple[str, ...]
    lang: str = "en"

    def __str__(self) -> str:
        return _where(self.keys, self.lang)


def _where(sections: tuple[str, ...], lang: str) -> str:
    if not sections:
        return i18n.value("authors", lang)
    return "; ".join(i18n.t(f"sec_{s}", lang) for s in sections)


def consort_checklist(lang: str = "en") -> pd.DataFrame:
    """CONSORT 2025 with the factorial extension: one row per item (extension rows follow the
    item they modify, with ``item`` like ``9-F``).

    Columns: ``item, part, topic, requirement, where, sections, status``.
    """
    ext: dict[str, list[tuple[str, str, tuple[str, ...], str]]] = {}
    for item, topic, text, secs, status in FACTORIAL:
        ext.setdefault(item, []).append((topic, text, secs, status))
    rows = []
    for item, part, topic, text, secs, status in CONSORT_2025:
        rows.append({"item": item, "part": part, "topic": topic, "requirement": text, "where": _where(secs, lang),
                     "sections": ",".join(secs), "status": status})
        for etopic, etext, esecs, estatus in ext.get(item, []):
            rows.append({"item": f"{item}-F", "part": part, "topic": f"{etopic} (factorial)", "requirement": etext,
                         "where": _where(esecs, lang), "sections": ",".join(esecs), "status": estatus})
    return pd.DataFrame(rows)


def _refs(sections: str, lang: str) -> SectionRefs:
    return SectionRefs(tuple(k for k in str(sections).split(",") if k), lang)


def display_checklist(df: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """The checklist as the report shows it (item, topic, where, status): topics in ``lang``, and
    ``where`` as links to the sections that answer the item (with their page numbers in the PDF)."""
    return pd.DataFrame({"item": [str(x).replace("-", "\u2011") for x in df["item"]],  # "21a-F" never breaks at its hyphen
                         "topic": [i18n.topic(str(x), lang) for x in df["topic"]],
                         "where": [_refs(x, lang) if x == x else SectionRefs((), lang) for x in df["sections"]],
                         "status": [i18n.value(s, lang) for s in df["status"]]})


def cheers_answers(config: Any, lang: str = "en") -> dict[int, str]:
    """What this study's configuration answers to CHEERS items 8–22, in ``lang``."""
    def n(x: float) -> str:
        s = f"{x:g}"
        return s.replace(".", ",") if lang == "fi" else s

    return {
        8: i18n.value(config.perspective, lang),
        9: i18n.t("cheers_answer_9", lang, days=config.follow_up_days, h=n(config.horizon_years)),
        10: i18n.t("cheers_answer_10", lang, r=n(config.discount_rate)),
        11: i18n.t("cheers_answer_11", lang, o=i18n.outcome(config.primary, lang)),
        13: i18n.t("cheers_answer_13", lang, o=i18n.outcome(config.primary, lang),
                   w=", ".join(i18n.num(w, lang, 0) for w in config.wtp_eur)),
        15: i18n.t("cheers_answer_15", lang, py=config.price_year),
        20: i18n.t("cheers_answer_20", lang, reps=i18n.num(config.bootstrap_reps, lang, 0), seed=config.seed),
        22: i18n.t("cheers_answer_22", lang, dw=n(config.deadweight), at=n(config.attribution), dp=n(config.displacement),
                   do=n(config.drop_off), ic=", ".join(i18n.value(x, lang) for x in config.intervention_categories)),
    }


def cheers_display(cheers: pd.DataFrame, lang: str = "en", config: Any = None) -> pd.DataFrame:
    """CHEERS 2022 (``results/cheers.csv``: ``item, topic, where_answered, status, answer``) in the report's
    columns: the topic in ``lang``, where as links to the report's sections (:data:`CHEERS_SECTIONS`), and,
    when ``config`` is given, this study's answer in ``lang`` (else the answer as ``cheers.csv`` has it)."""
    c = cheers
    items = [int(i) for i in c["item"]]
    answers = cheers_answers(config, lang) if config is not None else {}
    answer = [answers.get(i, "") if config is not None else ("" if a != a else str(a)) for i, a in zip(items, c["answer"])]
    return pd.DataFrame({"item": c["item"].astype(str), "topic": [i18n.topic(str(x), lang) for x in c["topic"]],
                         "where": [SectionRefs(CHEERS_SECTIONS.get(i, ()), lang) for i in items],
                         "status": [i18n.value(s, lang) for s in c["status"]], "answer": answer})
