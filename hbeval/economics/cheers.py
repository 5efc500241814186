"""The CHEERS 2022 reporting checklist for the economic evaluation, with where each item is
answered.

CHEERS 2022 (Husereau et al., *Value Health* 2022;25:3–9; BMJ 2022;376:e067975) has 28
items in seven sections and explicitly covers social care. :func:`cheers_checklist` returns
one row per item: ``item, section, topic, guidance`` (paraphrased), ``where_answered`` (the
report section and result file that answer it), ``status`` (``answered``: hbeval's output
answers it; ``partly``: hbeval gives the figures, the authors add context; ``authors``:
only the evaluators can answer it) and ``answer`` (what this study's configuration says,
where the item is a parameter).
"""

from __future__ import annotations

import pandas as pd

# (item, section, topic, guidance, where answered, status)
_ITEMS: tuple[tuple[int, str, str, str, str, str], ...] = (
    (1, "Title", "Title", "Identify the study as an economic evaluation and name the interventions compared.",
     "report: title page; Executive summary", "partly"),
    (2, "Abstract", "Abstract", "Structured summary of context, key methods, results and alternative analyses.",
     "report: Executive summary", "partly"),
    (3, "Introduction", "Background and objectives",
     "Context, study question and its relevance for decisions in policy or practice.", "Authors (the report has no background section)", "authors"),
    (4, "Methods", "Health economic analysis plan", "Whether an analysis plan was written and where it is available.",
     "study.toml (pre-declared parameters) and manifest.json; report: Deviations from the analysis plan; Appendix C: Reproducibility", "partly"),
    (5, "Methods", "Study population", "Characteristics of the population (age, household, socioeconomic, service need).",
     "results/baseline.csv, results/consort.csv; report: Participant flow (CONSORT); Baseline characteristics and balance", "answered"),
    (6, "Methods", "Setting and location", "Context that may influence the findings.",
     "report: Baseline characteristics and balance (sites and service lines from clients.csv)", "partly"),
    (7, "Methods", "Comparators", "The interventions or strategies compared and why.",
     "report: Participant flow (CONSORT) (2×2 factorial arms and the comparison group); Cost-effectiveness: CE plane and CEAC; results/cea.csv contrasts", "answered"),
    (8, "Methods", "Perspective", "The perspective(s) adopted and why.",
     "results/rosi.csv column perspective; report: Costs", "answered"),
    (9, "Methods", "Time horizon", "The time horizon and why it is appropriate.",
     "results/rosi.csv horizon_years; follow-up window in report: Costs; Return on social investment (ROSI)", "answered"),
    (10, "Methods", "Discount rate", "The discount rate(s) and why chosen.",
     "results/rosi.csv discount_rate; report: Return on social investment (ROSI)", "answered"),
    (11, "Methods", "Selection of outcomes", "Outcomes used as measures of benefit and harm.",
     "results/effects.csv (primary outcome first); results/cea.csv column outcome; report: Primary and secondary outcomes; "
     "Cost-effectiveness: CE plane and CEAC", "answered"),
    (12, "Methods", "Measurement of outcomes", "How the outcomes were measured.",
     "data_schema/instruments (Kykyviisari, Kompassi); report: Primary and secondary outcomes", "answered"),
    (13, "Methods", "Valuation of outcomes", "Population and methods used to value outcomes.",
     "report: Cost-effectiveness: CE plane and CEAC (outcomes in instrument points; WTP grid per point, no utility weights)", "partly"),
    (14, "Methods", "Measurement and valuation of resources and costs", "How resource use was measured and costs valued.",
     "results/costs.csv; unit-cost catalogue with sources (assumptions listed); report: Costs; Appendix A: Data quality", "answered"),
    (15, "Methods", "Currency, price date, and conversion",
     "Dates of resource quantities and unit costs, currency and year of conversion.",
     "results/costs.csv and rosi.csv price_year; price index (hbeval/data/price_index.csv or the study's); "
     "report: Costs; Appendix C: Reproducibility", "answered"),
    (16, "Methods", "Rationale and description of model", "If a model is used, describe it and why; where it is available.",
     "Not applicable: within-trial analysis, no decision model (report: Cost-effectiveness: CE plane and CEAC)", "answered"),
    (17, "Methods", "Analytics and assumptions",
     "Methods for analysing or statistically transforming data, extrapolation and validation.",
     "report: Cost-effectiveness: CE plane and CEAC; Return on social investment (ROSI) (ANCOVA ΔC/ΔE, bootstrap, Fieller, ROSI adjustments); docstrings of hbeval.economics.cea, hbeval.economics.rosi",
     "answered"),
    (18, "Methods", "Characterising heterogeneity", "Methods for estimating how results vary between subgroups.",
     "results/costs.csv by cell; results/cea.csv per contrast and cell; pre-specified subgroups ([outcomes] subgroups): "
     "results/effects.csv subgroup rows (effect per level, test of heterogeneity with its RI p-value) and "
     "results/subgroup_costs.csv (report: Subgroups); report: Costs; Cost-effectiveness: CE plane and CEAC", "partly"),
    (19, "Methods", "Characterising distributional effects",
     "How impacts are distributed across different individuals, or adjustments for priority populations.",
     "Not estimated by hbeval; authors discuss it (the report has no discussion section)", "authors"),
    (20, "Methods", "Characterising uncertainty", "Methods to characterise sources of uncertainty in the analysis.",
     "results/cea.csv (bootstrap, BCa, Fieller), results/ceac.csv, results/rosi_sensitivity.csv (one-way); "
     "report: Cost-effectiveness: CE plane and CEAC; Return on social investment (ROSI)", "answered"),
    (21, "Methods", "Approach to engagement with patients and others affected by the study",
     "Approaches to engage patients, service recipients, the public, communities or stakeholders in the study design.",
     "Authors", "authors"),
    (22, "Results", "Study parameters", "Values, ranges, references and distributions of all parameters; reasons for them.",
     "study.toml [economics]; unit-cost catalogue; results/rosi_sensitivity.csv ranges; "
     "report: Return on social investment (ROSI); Appendix C: Reproducibility", "answered"),
    (23, "Results", "Summary of main results", "Mean values of the main categories of costs and outcomes and their summary measure.",
     "results/costs.csv, results/cea.csv (ΔC, ΔE, ICER, INB), results/rosi.csv; report: Costs; "
     "Cost-effectiveness: CE plane and CEAC; Return on social investment (ROSI)", "answered"),
    (24, "Results", "Effect of uncertainty", "How uncertainty about judgements, inputs or projections affects the findings.",
     "CE plane and CEAC figures; tornado figure; results/ceac.csv; report: Cost-effectiveness: CE plane and CEAC; "
     "Return on social investment (ROSI)", "answered"),
    (25, "Results", "Effect of engagement with patients and others affected by the study",
     "Any difference that engagement of patients or others made to the approach or findings.",
     "Authors", "authors"),
    (26, "Discussion", "Study findings, limitations, generalisability, and current knowledge",
     "Key findings, limitations, ethical or equity considerations not captured, and effect on patients, policy or practice.",
     "Authors; report: The non-randomised comparison group (its limits), Appendix A: Data quality (assumed unit costs)", "partly"),
    (27, "Other relevant information", "Source of funding",
     "How the study was funded and the funder's role in the study.", "Authors", "authors"),
    (28, "Other relevant information", "Conflicts of interest",
     "Conflicts of interest of the authors, as the journal or ICMJE requires.", "Authors", "authors"),
)

_SECTION_FI = {"Title": "Otsikko", "Abstract": "Tiivistelmä", "Introduction": "Johdanto", "Methods": "Menetelmät",
               "Results": "Tulokset", "Discussion": "Pohdinta", "Other relevant information": "Muut tiedot"}


def cheers_checklist(config=None, lang: str = "en") -> pd.DataFrame:
    """The 28 CHEERS 2022 items and where the report answers each.

    Parameters
    ----------
    config : a :class:`hbeval.study.config.StudyConfig` (optional); when given, the ``answer``
        column states the study's perspective, horizon, discount rate, price year, WTP
        grid and primary outcome.
    lang : ``"en"`` or ``"fi"`` (translates the section names; the rest stays English).

    Returns
    -------
    DataFrame ``item, section, topic, guidance, where_answered, status, answer``,
    28 rows in item order.
    """
    answers: dict[int, str] = {}
    if config is not None:
        answers = {
            8: config.perspective,
            9: f"{config.follow_up_days} days of follow-up; ROSI horizon {config.horizon_years} year(s)",
            10: f"{config.discount_rate:g} per year (ROSI beyond the first year)",
            11: f"primary outcome {config.primary}; costs from the organiser's registers",
            13: f"willingness to pay per point of {config.primary}: {', '.join(f'{w:g}' for w in config.wtp_eur)} EUR",
            15: f"EUR, price year {config.price_year}",
            22: (f"deadweight {config.deadweight:g}, attribution {config.attribution:g}, displacement "
                 f"{config.displacement:g}, drop-off {config.drop_off:g}; intervention costs: "
                 f"{', '.join(config.intervention_categories)}"),
            20: f"{config.bootstrap_reps} bootstrap replicates (CEA at least 5000), seed {config.seed}",
        }
        if config.subgroups:  # outcomes and costs by pre-specified subgroup: item 18 is answered
            answers[18] = (f"pre-specified subgroups: {', '.join(config.subgroups)}; effects of each margin by level with "
                           "a test of heterogeneity (exploratory unless it is convincing), costs by level")
    rows = []
    for item, section, topic, guidance, where, status in _ITEMS:
        status = "answered" if item == 18 and 18 in answers else status
        rows.append({"item": item, "section": _SECTION_FI[section] if lang == "fi" else section, "topic": topic,
                     "guidance": guidance, "where_answered": where, "status": status, "answer": answers.get(item, "")})
    return pd.DataFrame(rows)


def cheers_results(study) -> pd.DataFrame:
    """``results/cheers.csv`` for a study."""
    return cheers_checklist(study.config)
