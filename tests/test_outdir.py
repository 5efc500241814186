"""``--out`` never deletes what hbeval did not write (issue "Nothing lost, nothing leaked")."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from hbeval import outdir
from hbeval.cli import main
from hbeval.demo import write_demo
from hbeval.errors import InputError


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder below ``root`` with the SHA-256 of its bytes."""
    snap = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            snap[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in files:
            p = os.path.join(dirpath, f)
            snap[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return snap


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny") / "study"
    write_demo(d, n_pilot=40, n_comparison=40, seed=1)  # 24 families crash RI today (issue "Real pilots")
    return d


@pytest.fixture
def home(tmp_path, tiny_study) -> Path:
    """``home/study`` (a copy of the tiny study, its store built) and ``home/thesis`` (a
    foreign folder with a document in it)."""
    shutil.copytree(tiny_study, tmp_path / "home" / "study")
    (tmp_path / "home" / "thesis").mkdir()
    (tmp_path / "home" / "thesis" / "thesis.docx").write_bytes(b"three years of work")
    (tmp_path / "home" / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["validate", str(tmp_path / "home" / "study")]) == 0
    return tmp_path / "home"


# (--out relative to the home folder, the words the refusal must contain)
REFUSED = [
    ("study", "is the study folder"),
    ("study/out", "inside the study folder"),
    ("study/.hbeval", "inside the study folder"),
    (".", "holds the study folder"),
    ("..", "holds the study folder"),
    ("thesis", "did not write"),
    ("notes.txt", "not a folder"),
    ("/", "filesystem root"),
]


@pytest.mark.parametrize("command", ["analyze", "report", "validate"])
@pytest.mark.parametrize(("target", "words"), REFUSED)
def test_out_refused_and_nothing_touched(home, target, words, command, capsys):
    before = snapshot(home.parent)
    out = target if target.startswith("/") else str(home / target)
    args = [command, str(home / "study"), "--out", out]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert words in err, err
    assert snapshot(home.parent) == before


def test_out_symlink_to_study_refused(home):
    (home / "link").symlink_to(home / "study")
    before = snapshot(home / "study")
    assert main(["analyze", str(home / "study"), "--out", str(home / "link")]) == 1
    assert snapshot(home / "study") == before


def test_empty_folder_and_rerun_replace_only_own_files(home):
    out = home / "out"
    out.mkdir()
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 0
    assert (out / outdir.MARKER).is_file() and (out / "results" / "effects.csv").is_file()
    first = snapshot(out)
    # someone keeps their own files in the output folder: a rerun replaces only hbeval's own
    (out / "my_notes.md").write_text("mine", encoding="utf-8")
    (out / "results" / "extra.xlsx").write_bytes(b"mine too")
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 0
    assert (out / "my_notes.md").read_text(encoding="utf-8") == "mine"
    assert (out / "results" / "extra.xlsx").read_bytes() == b"mine too"
    again = snapshot(out)
    for rel, digest in first.items():
        if rel.startswith("results/") and rel.endswith(".csv"):
            assert again[rel] == digest  # the same results, byte for byte
    # and a rerun of a folder holding only hbeval's files swaps it whole
    (out / "my_notes.md").unlink()
    (out / "results" / "extra.xlsx").unlink()
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 0
    assert not any(p.name.startswith(".out.") for p in home.iterdir())  # no leftovers beside it


def test_marker_cannot_point_outside(home, tmp_path):
    """A hand-edited marker that lists ``../thesis/thesis.docx`` deletes nothing outside."""
    out = home / "out"
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 0
    (out / "keep.txt").write_text("x", encoding="utf-8")
    m = out / outdir.MARKER
    m.write_text(m.read_text(encoding="utf-8").replace('"files": [', '"files": ["../thesis/thesis.docx", "/etc/hostname",'),
                 encoding="utf-8")
    before = snapshot(home / "thesis")
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 0
    assert snapshot(home / "thesis") == before
    assert (out / "keep.txt").exists()


def test_failed_run_leaves_out_and_no_temporary_folder(home, monkeypatch):
    out = home / "out"
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 0
    before = snapshot(out)
    import hbeval.pipeline as analyze

    def boom(*a, **k):
        raise InputError("planted failure")

    monkeypatch.setattr(analyze, "compute", boom)
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 1
    assert snapshot(out) == before
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt", "out", "study", "thesis"]


def test_stale_temporary_folders_are_swept(home):
    out = home / "out"
    dead = home / ".out.tmp-dead"
    dead.mkdir()
    (dead / "copy.csv").write_text("a copy of the inputs", encoding="utf-8")
    (dead / outdir.TMP_MARKER).write_text("999999999", encoding="ascii")  # no such process
    alive = home / ".out.tmp-alive"
    alive.mkdir()
    (alive / outdir.TMP_MARKER).write_text(str(os.getpid()), encoding="ascii")
    foreign = home / ".out.tmp-foreign"  # not hbeval's (no tag): left alone
    foreign.mkdir()
    assert main(["analyze", str(home / "study"), "--out", str(out)]) == 0
    assert not dead.exists() and alive.exists() and foreign.exists()


def test_demo_refuses_foreign_folder_and_keeps_own_over_rerun(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_bytes(b"work")
    assert main(["demo", str(foreign), "--n-pilot", "8", "--n-comparison", "8"]) == 1
    assert "did not write" in capsys.readouterr().err
    assert snapshot(foreign) == {"thesis.docx": hashlib.sha256(b"work").hexdigest()}
    d = tmp_path / "d"
    assert main(["demo", str(d), "--n-pilot", "8", "--n-comparison", "8"]) == 0
    (d / "my_analysis.R").write_text("# mine", encoding="utf-8")
    assert main(["demo", str(d), "--n-pilot", "8", "--n-comparison", "8", "--seed", "3"]) == 0
    assert (d / "my_analysis.R").read_text(encoding="utf-8") == "# mine"


def test_report_open_refreshes_results_without_deleting(home):
    """The notebooks' ``Report.open`` recomputes ``out/results`` in place: hbeval's own
    tables are replaced, a stranger's file is never overwritten, the study is refused."""
    from hbeval.report.render import Report

    with pytest.raises(InputError, match="study folder"):
        Report.open(home / "study", out=home / "study")
    with pytest.raises(InputError, match="did not write"):
        Report.open(home / "study", out=home / "thesis")
    out = home / "nb"
    Report.open(home / "study", out=out)
    assert (out / "results" / "effects.csv").exists() and outdir.is_output(out)
    (out / "results" / "mine.csv").write_text("a,b\n", encoding="utf-8")
    (out / "results" / "effects.csv").unlink()  # stale: recomputed
    Report.open(home / "study", out=out)
    assert (out / "results" / "effects.csv").exists() and (out / "results" / "mine.csv").exists()
