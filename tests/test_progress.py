"""``hbeval analyze``'s progress covers all of its work: how the store was opened, the shared
inputs, every step, the complementary suppression and the writing (a national study spent
minutes in parts that showed nothing)."""

from __future__ import annotations

import re

import pandas as pd

from hbeval import pipeline
from hbeval.study.store import open_study


def test_every_part_of_analyze_shows_its_time(study_copy, tmp_path, monkeypatch, capsys):
    study = open_study(study_copy)
    capsys.readouterr()

    def step(s, sh, a):
        a.tables["deviations"] = pd.DataFrame({"item": ["none"], "note": ["no plan sealed"]})

    monkeypatch.setattr(pipeline, "STEPS", (("only step", step),))
    monkeypatch.setattr(pipeline, "shared_inputs", lambda s: None)
    pipeline.run(study, tmp_path / "out", progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("study store rebuilt (no study store yet): inputs validated and stored in")
    labels = [ln for ln in lines[1:] if not ln.startswith("      done in")]
    assert labels == ["[0/1] shared inputs: outcome frame, family costs, re-randomisations ...", "[1/1] only step ...",
                      "complementary suppression across all tables ...",
                      "writing results/, replicates/ and manifest.json ..."]
    # every label is followed by its time
    assert all(re.fullmatch(r"      done in \d+\.\d s", lines[lines.index(lb) + 1]) for lb in labels)
    assert (tmp_path / "out" / "results" / "deviations.csv").is_file() and (tmp_path / "out" / "manifest.json").is_file()


def test_no_progress_no_output(study_copy, tmp_path, monkeypatch, capsys):
    study = open_study(study_copy)
    capsys.readouterr()
    monkeypatch.setattr(pipeline, "STEPS", ())
    monkeypatch.setattr(pipeline, "shared_inputs", lambda s: None)
    pipeline.run(study, tmp_path / "out", progress=False)
    assert capsys.readouterr().err == ""
