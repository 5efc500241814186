"""The CHEERS 2022 checklist table."""

from __future__ import annotations

from hbeval.economics.cheers import cheers_checklist
from hbeval.study.config import StudyConfig


def test_28_items_in_order_with_sections():
    t = cheers_checklist()
    assert list(t["item"]) == list(range(1, 29))
    assert list(t.columns) == ["item", "section", "topic", "guidance", "where_answered", "status", "answer"]
    sec = dict(zip(t["item"], t["section"]))
    assert sec[1] == "Title" and sec[2] == "Abstract" and sec[3] == "Introduction"
    assert {sec[i] for i in range(4, 22)} == {"Methods"}
    assert {sec[i] for i in range(22, 26)} == {"Results"}
    assert sec[26] == "Discussion" and sec[27] == sec[28] == "Other relevant information"
    topics = dict(zip(t["item"], t["topic"]))
    assert topics[4] == "Health economic analysis plan" and topics[19] == "Characterising distributional effects"
    assert topics[21].startswith("Approach to engagement") and topics[28] == "Conflicts of interest"
    assert t["where_answered"].str.len().gt(0).all()
    assert set(t["status"]) <= {"answered", "partly", "authors"}


def test_answers_follow_the_configuration_and_finnish_sections():
    cfg = StudyConfig(price_year=2023, discount_rate=0.03, perspective="municipal")
    t = cheers_checklist(cfg, lang="fi").set_index("item")
    assert "2023" in t.loc[15, "answer"] and "EUR" in t.loc[15, "answer"]
    assert t.loc[8, "answer"] == "municipal"
    assert "0.03" in t.loc[10, "answer"]
    assert t.loc[5, "section"] == "Menetelmät"
