"""IJB-B/C evaluation on a small IJB-format set written here (synthetic faces as loose crops with known
landmarks), every figure re-computed with plain numpy loops as insightface's scripts do."""
import json
import re
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from arcface_keras.data.ijb import load_ijb
from arcface_keras.data.synthetic import TEMPLATE, render_identity_image
from arcface_keras.evaluation.ijb import embed_protocol, insightface_roc, score_protocol, tar_at_far

SUBJECTS = 6
G1, G2 = (0, 1, 2), (3, 4, 5)
TIE_PROBE, TIE_GALLERY = 400, 401  # copies of templates 200 and 100 under subject 5
# Features are float32 sums of a few hundred pixels; pooled in float64 here and there: 1e-5 is ~100 ulps.
TOLERANCE = 1e-5


def place(face, rng):
    """A loose crop: the aligned face turned, scaled and shifted on a 150x150 canvas; returns (crop, landmarks)."""
    angle, scale = rng.uniform(-15, 15), rng.uniform(0.8, 1.1)
    matrix = cv2.getRotationMatrix2D((56, 56), angle, scale)
    matrix[:, 2] += rng.uniform(10, 30, 2)
    crop = cv2.warpAffine(face, matrix, (150, 150), borderValue=(90, 90, 90))
    return crop, TEMPLATE @ matrix[:, :2].T + matrix[:, 2]


def template_plan():
    """{template: (subject, [(media, (identity, image) or a copied template's image name)])}."""
    plan, media = {}, 1000
    for s in range(SUBJECTS):
        plan[100 + s] = (s, [(media, (s, 0)), (media, (s, 1)), (media, (s, 2)), (media + 1, (s, 3))])
        plan[200 + s] = (s, [(media + 2, (s, 4)), (media + 2, (s, 5)), (media + 3, (s, 6))])
        plan[300 + s] = (s, [(media + 2, (s, 7))])  # one image, in a media that template 200+s also has
        media += 10
    return plan


@pytest.fixture(scope="module")
def ijb(tmp_path_factory):
    root = tmp_path_factory.mktemp("IJBC")
    (root / "loose_crop").mkdir()
    (root / "meta").mkdir()
    rng = np.random.default_rng(0)
    rows, landmarks, names_of = [], [], {}
    for template, (subject, images) in template_plan().items():
        for media, (identity, image) in images:
            name = f"{len(rows) + 1}.jpg"
            crop, points = place(cv2.cvtColor(render_identity_image(7, identity, image), cv2.COLOR_RGB2BGR), rng)
            cv2.imwrite(str(root / "loose_crop" / name), crop)
            rows.append((name, template, media)), landmarks.append((name, points, rng.uniform(0.5, 1.0)))
            names_of.setdefault(template, []).append((name, media, points, landmarks[-1][2]))
    for copy, original in ((TIE_PROBE, 200), (TIE_GALLERY, 100)):  # identical crops: tied scores
        for name, media, points, score in names_of[original]:
            new = f"{len(rows) + 1}.jpg"
            (root / "loose_crop" / new).write_bytes((root / "loose_crop" / name).read_bytes())
            rows.append((new, copy, media + 5000)), landmarks.append((new, points, score))
    rows.append(("broken.jpg", 300, 1002)), landmarks.append(("broken.jpg", TEMPLATE, 0.9))
    (root / "loose_crop" / "broken.jpg").write_bytes(b"not a jpeg")
    whole = (root / "loose_crop" / "1.jpg").read_bytes()  # cut short: OpenCV's imread would decode its top half
    rows.append(("truncated.jpg", 101, 1010)), landmarks.append(("truncated.jpg", landmarks[0][1], 0.9))
    (root / "loose_crop" / "truncated.jpg").write_bytes(whole[:len(whole) // 2])
    write_meta(root, rows, landmarks)
    return root


def subject_of(template):
    return 5 if template in (TIE_PROBE, TIE_GALLERY) else template % 100


def write_meta(root, rows, landmarks):
    meta = root / "meta"
    (meta / "ijbc_face_tid_mid.txt").write_text("".join(f"{n} {t} {m}\n" for n, t, m in rows))
    (meta / "ijbc_name_5pts_score.txt").write_text("".join(
        f"{n} {' '.join(f'{v:.3f}' for v in p.ravel())} {s:.4f}\n" for n, p, s in reversed(landmarks)))
    templates = sorted({t for _, t, _ in rows})
    pairs = [(a, b, int(subject_of(a) == subject_of(b))) for i, a in enumerate(templates) for b in templates[i + 1:]]
    (meta / "ijbc_template_pair_label.txt").write_text("".join(f"{a} {b} {l}\n" for a, b, l in pairs))
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID\n"
    for name, gallery in (("G1", [100 + s for s in G1] + [TIE_GALLERY]), ("G2", [100 + s for s in G2])):
        (meta / f"ijbc_1N_gallery_{name}.csv").write_text(
            header + "".join(f"{t},{subject_of(t)},img/{t}.jpg,1\n" for t in gallery for _ in range(2)))
    probes = [200 + s for s in range(SUBJECTS)] + [300 + s for s in range(SUBJECTS)] + [TIE_PROBE]
    (meta / "ijbc_1N_probe_mixed.csv").write_text(header + "".join(f"{t},{subject_of(t)},x.jpg,1\n" for t in probes))


@pytest.fixture(scope="module")
def embedder():
    """A pixel embedder (7x7 block means of the aligned crop): fast, and different faces differ."""
    image = keras.Input((112, 112, 3))
    return keras.Model(image, keras.layers.Flatten()(keras.layers.AveragePooling2D(16)(image)))


@pytest.fixture(scope="module")
def embedded(ijb, embedder):
    protocol = load_ijb(ijb)
    features, readable = embed_protocol(embedder, protocol, batch_size=8, flip=True, dtype=np.float32, workers=2)
    return protocol, features, readable


# --- plain re-computations ---------------------------------------------------------------------------

def reference_templates(protocol, features, readable, normalize, detector):
    out = {}
    for template in np.unique(protocol.templates):
        idx = [i for i in np.flatnonzero(protocol.templates == template) if readable[i]]
        media_feats = []
        for media in sorted({protocol.medias[i] for i in idx}):
            frames = []
            for i in idx:
                if protocol.medias[i] == media:
                    f = features[i].astype(np.float64)
                    f = f / np.linalg.norm(f) if normalize else f
                    frames.append(f * (protocol.scores[i] if detector else 1.0))
            media_feats.append(np.mean(frames, axis=0))
        total = np.sum(media_feats, axis=0)
        out[int(template)] = total / np.linalg.norm(total)
    return out


def reference_tar(scores, labels, far):
    """The conservative read-out by brute force: the best TAR of any threshold accepting FAR <= far."""
    thresholds = np.r_[np.inf, np.unique(scores)]
    return max((scores[labels] >= t).mean() for t in thresholds if (scores[~labels] >= t).mean() <= far)


def insightface_read_out(fpr, tpr, far):
    """eval_ijbc.py's lines on an ROC (fpr, tpr): flipped, then the nearest FAR, the first of equals."""
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    _, min_index = min(list(zip(abs(fpr - far), range(len(fpr)))))
    return tpr[min_index]


def reference_identification(feats, probes, gallery, fpir):
    """Brute force: rank of the mate counting ties against it; TPIR as the best TPIR over all thresholds
    whose FPIR (non-mated top scores strictly above the threshold) is at most `fpir`."""
    rank, mate_score, nonmated_top = [], [], []
    for probe, subject in probes:
        sims = {g: float(feats[probe] @ feats[g]) for g, _ in gallery}
        mates = [sims[g] for g, s in gallery if s == subject]
        if mates:
            best = max(mates)
            rank.append(1 + sum(sims[g] >= best for g, s in gallery if s != subject))
            mate_score.append(best)
        else:
            nonmated_top.append(max(sims.values()))
    rank, mate_score, nonmated_top = np.array(rank), np.array(mate_score), np.array(nonmated_top)
    candidates = np.r_[-np.inf, mate_score, nonmated_top]
    tpir = max((np.mean((rank == 1) & (mate_score > t)) for t in candidates if np.mean(nonmated_top > t) <= fpir),
               default=0.0)
    return {f"rank{k}": np.mean(rank <= k) for k in (1, 5, 10)}, tpir


# --- tests --------------------------------------------------------------------------------------------

def test_protocol_is_read(ijb):
    protocol = load_ijb(ijb)
    assert protocol.target == "ijbc" and len(protocol.names) == len(protocol.templates)
    assert set(protocol.galleries) == {"G1", "G2"} and len(protocol.probes[0]) == 2 * SUBJECTS + 1
    # the landmark file is written in reverse order: rows are matched by image name
    assert protocol.landmarks.shape == (len(protocol.names), 5, 2)


def test_crops_are_aligned_before_embedding(ijb, embedded, embedder):
    """Each feature is the embedding of the crop warped back onto the template (and its mirror)."""
    protocol, features, readable = embedded
    unreadable = [protocol.names.index(name) for name in ("broken.jpg", "truncated.jpg")]
    assert readable.sum() == len(readable) - 2 and not readable[unreadable].any()
    from arcface_keras.data.pipeline import scale

    for i in np.flatnonzero(readable)[::7]:
        image = cv2.cvtColor(cv2.imread(str(ijb / "loose_crop" / protocol.names[i])), cv2.COLOR_BGR2RGB)
        matrix = cv2.estimateAffinePartial2D(protocol.landmarks[i], TEMPLATE, method=cv2.LMEDS)[0]
        aligned = scale(cv2.warpAffine(image, matrix, (112, 112)).astype(np.float32))[None]
        expected = embedder.predict_on_batch(aligned) + embedder.predict_on_batch(aligned[:, :, ::-1])
        # a different estimator of the same exact similarity: sub-pixel resampling differences only
        assert np.abs(features[i] - expected[0]).max() < 0.05


@pytest.mark.parametrize("normalize, detector", [(False, True), (True, False), (False, False)])
def test_every_figure_matches_a_plain_recomputation(embedded, normalize, detector):
    protocol, features, readable = embedded
    report, _, ids, pooled = score_protocol(protocol, features, readable, normalize, detector)
    reference = reference_templates(protocol, features, readable, normalize, detector)
    assert list(ids) == sorted(reference)
    assert np.abs(pooled - np.array([reference[int(t)] for t in ids])).max() < TOLERANCE

    scores = np.array([reference[a] @ reference[b] for a, b in protocol.pairs])
    for far, tar in report["tar_at_far_conservative"].items():
        assert tar == pytest.approx(reference_tar(scores, protocol.labels, float(far)))

    probes = list(zip(*protocol.probes))
    for name, result in report["identification_open_set_per_gallery"].items():
        if name == "mean":
            continue
        for fpir in (1e-2, 1e-1):
            ranks, tpir = reference_identification(reference, probes, list(zip(*protocol.galleries[name])), fpir)
            assert result[f"tpir@fpir={fpir:.0e}"] == pytest.approx(tpir)
        assert {k: result[k] for k in ranks} == pytest.approx(ranks)
    galleries = report["identification_open_set_per_gallery"]
    assert galleries["mean"]["rank1"] == pytest.approx((galleries["G1"]["rank1"] + galleries["G2"]["rank1"]) / 2)


def test_edge_cases_are_present_and_handled(embedded):
    protocol, features, readable = embedded
    report, _, ids, pooled = score_protocol(protocol, features, readable)
    row = {int(t): i for i, t in enumerate(ids)}
    # a template with one image is that image's normalised feature
    single = np.flatnonzero((protocol.templates == 301))[0]
    assert np.allclose(pooled[row[301]], features[single] / np.linalg.norm(features[single]), atol=TOLERANCE)
    # copies tie exactly: a genuine and an impostor pair with the same score, and a tied 1:N search
    assert np.array_equal(pooled[row[TIE_PROBE]], pooled[row[200]])
    assert report["identification_open_set_per_gallery"]["G1"]["rank1"] < 1.0  # probe 200 ties its mate 100 with 401


def test_missing_template_images_and_bad_files(ijb, tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    for path in (ijb / "meta").iterdir():
        (meta / path.name).write_text(path.read_text())
    (meta / "ijbc_template_pair_label.txt").write_text("100 999 0\n")
    with pytest.raises(ValueError, match="template 999 of the pair list has no images"):
        load_ijb(tmp_path)
    (meta / "ijbc_name_5pts_score.txt").write_text("1.jpg 1 2 3\n")
    with pytest.raises(ValueError, match=r"ijbc_name_5pts_score.txt:1: expected 12 fields, found 4"):
        load_ijb(tmp_path)


def test_tool_writes_report_plot_and_reuses_features(ijb, embedder, tmp_path, capsys):
    from tools import eval_ijb

    model = tmp_path / "pixels.keras"
    embedder.save(model)
    features = tmp_path / "features.npz"
    report = eval_ijb.main([str(ijb), "--model", str(model), "--out", str(tmp_path / "r.json"),
                            "--features", str(features), "--batch-size", "8", "--workers", "1"])
    printed = capsys.readouterr().out
    assert "flip=True  detector_score=True  normalize_images=False  features_dtype=float16" in printed
    assert "per 1,000 images" in printed and "1:N open-set per gallery, G1  rank1:" in printed
    assert re.search(r"\n     insightface  ( +[0-9.]+){6}\n     conservative ( +[0-9.]+){6}\n", printed)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["unreadable_images"] == 2 and set(saved["read_outs"]) == {
        "tar_at_far_insightface", "tar_at_far_conservative", "identification_open_set_per_gallery"}
    for key in saved["read_outs"]:
        assert saved[key] == report[key]
    assert (tmp_path / "r_roc.png").stat().st_size > 0 and features.is_file()
    again = eval_ijb.main([str(ijb), "--model", str(model), "--out", str(tmp_path / "n.json"),
                           "--features", str(features), "--normalize-images"])
    assert again["options"]["normalize_images"] and again["seconds_per_1000_images"] is None
    protocol = load_ijb(ijb)
    with np.load(features) as f:
        expected, _, _, _ = score_protocol(protocol, f["features"], f["readable"], True, True)
        np.save(tmp_path / "plain.npy", f["features"].astype(np.float32))  # as another tool would keep them
    assert again["tar_at_far_insightface"] == expected["tar_at_far_insightface"]
    plain = eval_ijb.main([str(ijb), "--model", str(model), "--out", str(tmp_path / "p.json"),
                           "--features", str(tmp_path / "plain.npy")])  # all-zero rows: the unreadable crops
    assert plain["options"]["features_dtype"] == "float32" and plain["options"]["flip"] is None
    assert plain["unreadable_images"] == 2 and plain["tar_at_far_conservative"] == report["tar_at_far_conservative"]
    with pytest.raises(SystemExit, match="no such model file"):
        eval_ijb.main([str(ijb), "--model", str(tmp_path / "none.keras"), "--out", str(tmp_path / "x.json")])
    np.save(tmp_path / "wrong.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(SystemExit, match=r"^error: .*wrong.npy: holds a float32 array of shape \(3, 4\); .* with 57 rows"):
        eval_ijb.main([str(ijb), "--model", str(model), "--out", str(tmp_path / "x.json"),
                       "--features", str(tmp_path / "wrong.npy")])
    with pytest.raises(SystemExit) as exit_info:  # would be written as .npz under a .npy name: refused
        eval_ijb.main([str(ijb), "--model", str(model), "--out", str(tmp_path / "x.json"),
                       "--features", str(tmp_path / "new.npy")])
    assert exit_info.value.code == 2 and "give a .npz name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # checked before embedding, not when the report is written
        eval_ijb.main([str(ijb), "--model", str(model), "--out", str(model / "r.json")])
    assert exit_info.value.code == 2 and f"--out {model / 'r.json'}: {model} is a file" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# A hand-built ROC: (false, true) accepts at each distinct score, highest first, over 10 impostor and 4
# genuine pairs: (0, 1) (0, 2) (1, 2) (2, 2) (3, 2) (3, 3) (10, 4). sklearn drops (1, 2) and (2, 2), inner
# points of a straight run, so its vertices are FAR 0, 0, 0, .3, .3, 1 at TAR 0, .25, .5, .5, .75, 1.
HAND_SCORES = np.float32([0.9, 0.8, 0.7, 0.6, 0.5, 0.4] + [0.3] * 8)
HAND_LABELS = np.array([1, 1, 0, 0, 0, 1] + [0] * 7 + [1], bool)


def test_both_read_outs_on_a_hand_built_roc():
    fpr, tpr = insightface_roc(HAND_SCORES, HAND_LABELS)
    np.testing.assert_allclose(fpr, [0, 0, 0, .3, .3, 1], atol=1e-15)  # exact ratios of small counts
    np.testing.assert_allclose(tpr, [0, .25, .5, .5, .75, 1], atol=1e-15)
    tables, full_fpr, _ = tar_at_far(HAND_SCORES, HAND_LABELS, fars=(0.2, 0.1, 0.3, 0.01))
    assert len(full_fpr) == 8  # (0, 0) and the seven points above
    # FAR .2: the nearest vertex is .3 (gap .1; FAR 0 is .2 away), with TAR .75; at most .2 allows only .5
    assert tables["insightface"] == {"2e-01": 0.75, "1e-01": 0.5, "3e-01": 0.75, "1e-02": 0.5}
    assert tables["conservative"] == {"2e-01": 0.5, "1e-01": 0.5, "3e-01": 0.75, "1e-02": 0.5}


@pytest.mark.parametrize("seed", range(4))
def test_insightface_read_out_equals_eval_ijbc_on_sklearns_roc(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = rng.random(3000) < 0.1
    scores = np.round(rng.normal(labels * 1.5, 1.0), 2).astype(np.float32)  # rounded: many tied scores
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores)
    ours_fpr, ours_tpr = insightface_roc(scores, labels)
    np.testing.assert_array_equal(ours_fpr, fpr)
    np.testing.assert_array_equal(ours_tpr, tpr)
    fars = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 0.3)
    tables, _, _ = tar_at_far(scores, labels, fars)
    assert tables["insightface"] == {f"{far:.0e}": insightface_read_out(fpr, tpr, far) for far in fars}


def test_parse_errors_name_the_file_and_line(ijb, tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    for path in (ijb / "meta").iterdir():
        (meta / path.name).write_text(path.read_text())
    pairs = meta / "ijbc_template_pair_label.txt"
    original = pairs.read_text()
    for text, message in [
        ("TEMPLATE1 TEMPLATE2 LABEL\n" + original, r":1: 'TEMPLATE1' is not an integer; expected 'template templ"),
        (original.replace("\n", "\n\n", 2) + "100 101 2\n", rf":{original.count(chr(10)) + 3}: the label must be 0 or 1"),
        ("100 101 1\n100 101\n", r":2: expected 3 fields, found 2"),
    ]:
        pairs.write_text(text)
        with pytest.raises(ValueError, match=rf"ijbc_template_pair_label.txt{message}"):
            load_ijb(tmp_path)
    pairs.write_text(original.replace("\n", "\n\n"))  # blank lines are no error
    assert len(load_ijb(tmp_path).pairs) == original.count("\n")
    tid = meta / "ijbc_face_tid_mid.txt"
    lines = tid.read_text().splitlines()
    tid.write_text("\n".join(lines[:2] + [lines[2].replace(" ", " x", 1)] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match=r"ijbc_face_tid_mid.txt:3: 'x[0-9]+' is not an integer"):
        load_ijb(tmp_path)
    tid.write_text("\n".join(lines) + "\n")
    gallery = meta / "ijbc_1N_gallery_G1.csv"
    gallery.write_text(gallery.read_text() + "\n101,one,x.jpg,1\n")
    with pytest.raises(ValueError, match=r"ijbc_1N_gallery_G1.csv:[0-9]+: 'one' is not an integer"):
        load_ijb(tmp_path)
