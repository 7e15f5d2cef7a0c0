"""K-Face selection and per-person splits on a generated tree of empty files in the K-Face layout."""
import csv
import importlib.util
import itertools

import pytest

from arcface_keras.data import kface
from arcface_keras.data.folders import list_identity_folder

PERSONS = ("19062421", "19062431", "19071131")
SELECTION = dict(accessory="S001,S003", lighting="L1-L3", expression="E01-E03", camera="C5-C10")  # 2*3*3*6 = 108 each


@pytest.fixture(scope="module")
def kface_root(tmp_path_factory):
    """3 persons x S001-S003 x L1-L4 x E01-E03 x C1-C12; the last person has no C5 pictures."""
    root = tmp_path_factory.mktemp("kface")
    for person, s, light, e, c in itertools.product(PERSONS, range(1, 4), range(1, 5), range(1, 4), range(1, 13)):
        if person == PERSONS[2] and c == 5:
            continue
        folder = root / person / f"S{s:03d}" / f"L{light}" / f"E{e:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"C{c}.jpg").touch()
    (root / PERSONS[0] / "S001" / "L1" / "E01" / "notes.txt").touch()
    (root / PERSONS[0] / "S001" / "L1" / "readme.jpg").touch()
    return root


def load_tool(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", repo_root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_value_sets_match_names_and_ranges():
    cameras = kface.ValueSet("C5-C10,C20")
    assert all(c in cameras for c in ("C5", "C05", "C7", "C10", "C20"))
    assert not any(c in cameras for c in ("C4", "C11", "C19", "X7", "C", "C5x"))
    assert "L3" in kface.ValueSet("L1-3") and "S002" in kface.ValueSet("S001,S002,S005")
    assert "S003" not in kface.ValueSet("S001,S002,S005")
    with pytest.raises(ValueError, match="L1-L3"):
        kface.ValueSet("L1-E3")
    with pytest.raises(ValueError, match="empty"):
        kface.ValueSet("S001,,S002")


def test_scan_selects_fields_and_ignores_other_files(kface_root):
    everything = kface.scan(kface_root)
    assert len(everything) == 3 * 3 * 4 * 3 * 12 - 3 * 4 * 3
    images = kface.scan(kface_root, selection=SELECTION)
    counts = {person: len(group) for person, group in kface.group_by_person(images).items()}
    assert counts == {PERSONS[0]: 108, PERSONS[1]: 108, PERSONS[2]: 90}
    first = images[0]
    assert first.fields == dict(person=PERSONS[0], accessory="S001", lighting="L1", expression="E01", camera="C10")
    assert first.path == f"{PERSONS[0]}/S001/L1/E01/C10.jpg" and first.flat_name == "S001_L1_E01_C10.jpg"
    assert {image.fields["accessory"] for image in images} == {"S001", "S003"}
    assert {image.fields["camera"] for image in images} == {f"C{c}" for c in range(5, 11)}


def test_split_by_count_is_deterministic_and_reports_short_persons(kface_root):
    images = kface.scan(kface_root, selection=SELECTION)
    train, test, counts = kface.split(images, train=80, test=20, seed=3)
    assert counts[PERSONS[0]] == dict(selected=108, train=80, test=20, short=False)
    assert counts[PERSONS[2]] == dict(selected=90, train=70, test=20, short=True)
    assert not {i.path for i in train} & {i.path for i in test}
    assert len(train) == 80 + 80 + 70 and len(test) == 60

    again_train, again_test, _ = kface.split(images, train=80, test=20, seed=3)
    assert again_train == train and again_test == test
    _, other_test, _ = kface.split(images, train=80, test=20, seed=4)
    assert other_test != test
    # A person's split does not depend on who else is selected.
    alone = kface.scan(kface_root, selection={**SELECTION, "person": PERSONS[1]})
    _, alone_test, _ = kface.split(alone, train=80, test=20, seed=3)
    assert alone_test == [image for image in test if image.person == PERSONS[1]]

    train, test, counts = kface.split(images, train=80, test=20, seed=3, drop_short=True)
    assert {image.person for image in train + test} == set(PERSONS[:2])


def test_split_by_ratio(kface_root):
    images = kface.scan(kface_root, selection=SELECTION)
    train, test, counts = kface.split(images, test_ratio=0.25, seed=0)
    assert counts[PERSONS[0]]["test"] == 27 and counts[PERSONS[2]]["test"] == round(90 * 0.25)
    assert len(train) + len(test) == len(images)
    with pytest.raises(ValueError, match="either"):
        kface.split(images, test=3, test_ratio=0.2)


def test_other_layout(tmp_path):
    for person, light, cam in itertools.product(("ann", "ben"), ("L1", "L2"), ("C1", "C2", "C3")):
        folder = tmp_path / f"id_{person}" / light
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{cam}-E01.PNG").touch()
    images = kface.scan(tmp_path, "id_{person}/{lighting}/{camera}-{expression}.png", {"camera": "C2-C3"})
    assert len(images) == 8
    assert images[0].fields == dict(person="ann", lighting="L1", camera="C2", expression="E01")
    assert images[0].flat_name == "L1_C2_E01.PNG"
    with pytest.raises(ValueError, match="layout"):
        kface.scan(tmp_path, "{who}/{camera}.png")


def test_select_kface_tool_writes_lists_copies_and_short_report(kface_root, tmp_path, repo_root, capsys):
    out = tmp_path / "selected"
    argv = [str(kface_root), "--out", str(out), "--accessory", "S001,S003", "--lighting", "L1-L3",
            "--expression", "E01-E03", "--camera", "C5-C10", "--train", "80", "--test", "20", "--copy", "--no-progress"]
    load_tool(repo_root, "select_kface").main(argv)
    printed = capsys.readouterr().out
    assert "1 persons below 100" in printed and PERSONS[2] in printed

    lines = (out / "test.txt").read_text().splitlines()
    assert len(lines) == 60
    path, person = lines[0].split("\t")
    assert (kface_root / path).is_file() and path.startswith(person + "/")
    with open(out / "below_count.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [dict(person=PERSONS[2], selected="90", needed="100")]
    with open(out / "counts.csv", newline="") as f:
        trains = {row["person"]: row["train"] for row in csv.DictReader(f)}
    assert trains == {PERSONS[0]: "80", PERSONS[1]: "80", PERSONS[2]: "70"}

    paths, labels, names, empty = list_identity_folder(out / "train")
    assert names == list(PERSONS) and len(paths) == 230 and empty == []
    accessory, lighting, expression, camera = path[: -len(".jpg")].split("/")[1:]
    assert (out / "test" / person / f"{accessory}_{lighting}_{expression}_{camera}.jpg").is_file()


def test_select_kface_that_keeps_nobody_fails(kface_root, tmp_path, repo_root):
    argv = [str(kface_root), "--out", str(tmp_path / "none"), "--camera", "C5", "--test", "500", "--drop-short"]
    with pytest.raises(SystemExit, match="every person has fewer than 500 selected images") as exit_info:
        load_tool(repo_root, "select_kface").main(argv)
    assert exit_info.value.code not in (0, None) and not (tmp_path / "none").exists()


def test_select_kface_help(repo_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_tool(repo_root, "select_kface").main(["--help"])
    assert exit_info.value.code == 0 and "--test-ratio" in capsys.readouterr().out
