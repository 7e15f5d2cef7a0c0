"""tools/compare.py: one run per variant, the same budget, one table."""
import json

import pytest

from test_distribute import TINY_EXPERIMENT
from tools import compare


def test_compare_runs_each_variant_and_tabulates(tmp_path):
    experiment = tmp_path / "tiny_cnn_arc.py"
    experiment.write_text(TINY_EXPERIMENT)
    rows = compare.main([str(experiment), "--variant", "cos", "model.head={'type': 'cosface', 's': 16.0}",
                         "--variant", "soft", "model.head=softmax", "train.lr=0.05",
                         "--set", "train.save_steps=0", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                         "--work-dir", str(tmp_path / "runs")])
    assert [name for name, _ in rows] == ["cos", "soft"]
    runs = tmp_path / "runs"
    for name in ("cos", "soft"):  # each variant trained in its own directory with its own head
        config = json.loads((runs / f"tiny_cnn_arc_{name}" / "config.json").read_text())
        assert config["model"]["head"] == ({"type": "cosface", "s": 16.0} if name == "cos" else "softmax")
        assert config["train"]["epochs"] == 1 and config["train"]["save_steps"] == 0
    assert json.loads((runs / "tiny_cnn_arc_soft" / "config.json").read_text())["train"]["lr"] == 0.05
    table = (runs / "compare.md").read_text().splitlines()
    assert table[0].startswith("| variant | synthetic accuracy (%)") and len(table) == 4
    report = json.loads((runs / "compare.json").read_text())
    for line, (name, result) in zip(table[2:], rows):
        assert line.startswith(f"| {name} | {100 * result['synthetic/accuracy']:.2f} ± ")
        assert report["results"][name]["synthetic/accuracy"] == result["synthetic/accuracy"]

    # the same variants with another common setting: refused in one line, not the stored numbers again
    with pytest.raises(SystemExit) as refused:
        compare.main([str(experiment), "--variant", "cos", "model.head={'type': 'cosface', 's': 16.0}",
                      "--set", "train.save_steps=0", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                      "--set", "train.lr=0.05", "--work-dir", str(runs)])
    assert str(refused.value.code).startswith(f"error: {runs / 'tiny_cnn_arc_cos'} was trained with other settings: "
                                              "train.lr 0.1 → 0.05; train under a new name")


def test_compare_without_variants_fails_in_one_line(tmp_path, capsys):
    experiment = tmp_path / "tiny_cnn_arc.py"
    experiment.write_text(TINY_EXPERIMENT)
    with pytest.raises(SystemExit, match="no variants: give --heads or --variant"):
        compare.main([str(experiment)])


def test_compare_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--heads" in out and "softmax+center" in out
