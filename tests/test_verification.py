"""Verification protocol (against a plain re-implementation of insightface), metrics, embedding, set loaders."""
import pickle
import struct

import cv2
import numpy as np
import pytest

from arcface_keras.data import verification as sets
from arcface_keras.evaluation.verification import THRESHOLDS, evaluate, roc_curve

pytestmark = pytest.mark.numeric  # also run with oneDNN off (see Makefile)


# --- insightface's calculate_roc / calculate_accuracy, written plainly --------------------------------


def insightface_accuracy(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    return float(tp + tn) / dist.size


def insightface_kfold(embeddings1, embeddings2, actual_issame, nrof_folds=10):
    embeddings1 = embeddings1 / np.linalg.norm(embeddings1, axis=1, keepdims=True)
    embeddings2 = embeddings2 / np.linalg.norm(embeddings2, axis=1, keepdims=True)
    dist = np.sum(np.square(np.subtract(embeddings1, embeddings2)), 1)
    nrof_pairs = len(actual_issame)
    indices = np.arange(nrof_pairs)
    fold_sizes = np.full(nrof_folds, nrof_pairs // nrof_folds, dtype=int)  # sklearn KFold, shuffle=False
    fold_sizes[: nrof_pairs % nrof_folds] += 1
    accuracy, best_thresholds, current = [], [], 0
    for fold_size in fold_sizes:
        test_set = indices[current : current + fold_size]
        train_set = np.setdiff1d(indices, test_set)
        current += fold_size
        acc_train = np.zeros(len(THRESHOLDS))
        for threshold_idx, threshold in enumerate(THRESHOLDS):
            acc_train[threshold_idx] = insightface_accuracy(threshold, dist[train_set], actual_issame[train_set])
        best_threshold_index = np.argmax(acc_train)
        best_thresholds.append(THRESHOLDS[best_threshold_index])
        accuracy.append(insightface_accuracy(THRESHOLDS[best_threshold_index], dist[test_set], actual_issame[test_set]))
    return np.mean(accuracy), np.std(accuracy), accuracy, best_thresholds


def noisy_pairs(num_pairs, dim=8, seed=0):
    """Random embeddings whose same pairs are closer than different ones, with plenty of overlap."""
    rng = np.random.default_rng(seed)
    issame = rng.random(num_pairs) < 0.5
    embeddings1 = rng.normal(size=(num_pairs, dim))
    embeddings2 = np.where(issame[:, None], embeddings1, 0.0) + rng.normal(size=(num_pairs, dim)) * 1.2
    return embeddings1, embeddings2, issame


@pytest.mark.parametrize("num_pairs", [6000, 997, 123])
def test_kfold_accuracy_matches_insightface_loops(num_pairs):
    embeddings1, embeddings2, issame = noisy_pairs(num_pairs, seed=num_pairs)
    mean, std, accuracies, thresholds = insightface_kfold(embeddings1, embeddings2, issame)
    result = evaluate(embeddings1, embeddings2, issame)
    assert 0.6 < mean < 0.99  # the threshold choice matters on this data
    assert result["accuracy"] == mean
    assert result["std"] == std
    assert result["fold_accuracies"] == accuracies
    assert result["fold_thresholds"] == thresholds
    assert result["threshold"] == pytest.approx(np.mean(thresholds))
    assert result["num_pairs"] == num_pairs


def test_perfectly_separable_pairs_score_one():
    rng = np.random.default_rng(1)
    embeddings1 = rng.normal(size=(600, 16))
    issame = np.arange(600) % 2 == 0
    embeddings2 = np.where(issame[:, None], embeddings1, -embeddings1)
    result = evaluate(embeddings1, embeddings2, issame)
    assert result["accuracy"] == 1.0 and result["std"] == 0.0
    assert result["auc"] == 1.0 and result["eer"] == 0.0
    assert result["tar@far=1e-1"] == 1.0 and result["tar@far=1e-2"] == 1.0


def test_identical_embeddings_score_chance_on_balanced_pairs():
    embeddings = np.ones((6000, 4))
    issame = np.arange(6000) % 2 == 0
    result = evaluate(embeddings, embeddings, issame)
    assert result["accuracy"] == 0.5
    assert result["auc"] == 0.5
    assert result["eer"] == 0.5


def reference_tar_at_far(distances, issame, far):
    best = 0.0
    for threshold in np.r_[-np.inf, np.unique(distances)]:
        accepted = distances <= threshold
        if accepted[~issame].sum() <= far * (~issame).sum() + 1e-9:
            best = max(best, accepted[issame].mean())
    return best


def test_tar_at_far_and_auc_against_brute_force():
    embeddings1, embeddings2, issame = noisy_pairs(2400, dim=4, seed=3)
    result = evaluate(embeddings1, embeddings2, issame)
    distances = np.sum((embeddings1 / np.linalg.norm(embeddings1, axis=1, keepdims=True)
                        - embeddings2 / np.linalg.norm(embeddings2, axis=1, keepdims=True)) ** 2, axis=1)
    negatives = int((~issame).sum())
    assert 100 <= negatives < 10_000
    for key, far in [("tar@far=1e-1", 1e-1), ("tar@far=1e-2", 1e-2)]:
        assert result[key] == pytest.approx(reference_tar_at_far(distances, issame, far), abs=1e-12)
    assert ("tar@far=1e-3" in result) == (negatives >= 1000)
    assert "tar@far=1e-4" not in result
    positive, negative = distances[issame][:, None], distances[~issame][None, :]
    rank_auc = np.mean((positive < negative) + 0.5 * (positive == negative))
    assert result["auc"] == pytest.approx(rank_auc, abs=1e-12)


def test_auc_counts_ties_as_half_and_eer_on_a_hand_computed_curve():
    distances = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8, 0.5, 0.5])
    issame = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0], bool)
    fpr, tpr, thresholds, _ = roc_curve(distances, issame)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(thresholds) == len(np.unique(distances)) + 1
    positive, negative = distances[issame][:, None], distances[~issame][None, :]
    assert np.trapezoid(tpr, fpr) == pytest.approx(np.mean((positive < negative) + 0.5 * (positive == negative)))
    # pos 0.1 0.2 0.3 0.6, neg 0.4 0.5 0.7 0.8: at t = 0.4 one of four is falsely accepted and one falsely rejected
    embeddings = np.array([[np.cos(np.arccos(1 - d / 2)), np.sin(np.arccos(1 - d / 2))] for d in distances[:8]])
    result = evaluate(np.tile([[1.0, 0.0]], (8, 1)), embeddings, issame[:8], n_folds=2)
    assert result["eer"] == pytest.approx(0.25)
    assert result["auc"] == pytest.approx(14 / 16)


def test_eer_of_two_gaussians():
    rng = np.random.default_rng(5)
    distances = np.r_[rng.normal(1.0, 0.2, 20000), rng.normal(1.4, 0.2, 20000)]  # crossing at 1.2: EER = Φ(-1)
    issame = np.r_[np.ones(20000, bool), np.zeros(20000, bool)]
    fpr, tpr, _, _ = roc_curve(distances, issame)
    from arcface_keras.evaluation.verification import equal_error_rate

    assert equal_error_rate(fpr, tpr) == pytest.approx(0.1587, abs=0.006)


def test_evaluate_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="embedding arrays"):
        evaluate(np.zeros((10, 4)), np.zeros((9, 4)), np.zeros(10, bool))
    with pytest.raises(ValueError, match="both same and different"):
        evaluate(np.ones((10, 4)), np.ones((10, 4)), np.ones(10, bool))


# --- embedding ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder():
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Flatten()(x)  # position-sensitive: a mirrored image embeds differently
    return keras.Model(inputs, keras.layers.Dense(8)(x))


def test_embed_images_sums_the_mirror_and_normalises(embedder):
    from arcface_keras.evaluation.embed import embed_images

    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    mirrored = images[:, :, ::-1]
    flipped = embed_images(embedder, images, batch_size=2)
    assert flipped.dtype == np.float32 and flipped.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(embed_images(embedder, mirrored, batch_size=3), flipped, atol=1e-6)
    plain, plain_mirrored = embed_images(embedder, images, flip=False), embed_images(embedder, mirrored, flip=False)
    assert np.abs(plain - plain_mirrored).max() > 1e-3
    raw = embedder.predict_on_batch((images.astype(np.float32) - 127.5) / 127.5)
    np.testing.assert_allclose(plain, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_embed_images_resizes_to_the_model_input(embedder):
    from arcface_keras.evaluation.embed import embed_images

    import tensorflow as tf

    images = np.random.default_rng(1).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    # Area-averaged on float pixels, as the training pipeline resizes (no rounding to uint8 in between).
    inputs = (tf.image.resize(images.astype(np.float32), (16, 16), method="area").numpy() - 127.5) / 127.5
    raw = embedder.predict_on_batch(inputs) + embedder.predict_on_batch(inputs[:, :, ::-1])
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(embed_images(embedder, images), expected, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        embed_images(embedder, images.astype(np.float32))


# --- sets -----------------------------------------------------------------------------------------


def write_faces(root, identities, per_identity, lfw_naming=True, size=16, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(identities):
        name = f"Person_{i:02d}"
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(1, per_identity + 1):
            filename = f"{name}_{n:04d}.jpg" if lfw_naming else f"img{n:03d}.png"
            cv2.imwrite(str(root / name / filename), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def test_pairs_txt_both_formats_lfw_and_sorted_naming(tmp_path):
    write_faces(tmp_path / "lfw", 3, 3)
    write_faces(tmp_path / "ours", 3, 3, lfw_naming=False)
    body = "Person_00\t1\t3\nPerson_01 2 Person_02 1\n\nPerson_02 2 3\nPerson_00 2 Person_01 3\n"
    (tmp_path / "lfw" / "pairs.txt").write_text("2 1\n" + body)
    (tmp_path / "ours" / "pairs.txt").write_text(body)
    lfw_images, lfw_issame = sets.load_verification_set(tmp_path / "lfw")
    our_images, our_issame = sets.load_verification_set(tmp_path / "ours" / "pairs.txt")
    assert lfw_images.shape == our_images.shape == (8, 16, 16, 3) and lfw_images.dtype == np.uint8
    assert lfw_issame.tolist() == our_issame.tolist() == [True, False, True, False]
    expected = cv2.cvtColor(cv2.imread(str(tmp_path / "lfw/Person_02/Person_02_0001.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(lfw_images[3], expected)
    expected = cv2.cvtColor(cv2.imread(str(tmp_path / "ours/Person_01/img003.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(our_images[7], expected)


def test_pairs_txt_errors_name_the_file_and_line(tmp_path):
    write_faces(tmp_path, 2, 2)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Person_00 1 2\nPerson_00 1 Person_01 x\n")
    with pytest.raises(ValueError, match=r"pairs.txt:2: expected 'name n1 n2'"):
        sets.parse_pairs_txt(pairs)
    pairs.write_text("Person_00 1 2\nPerson_00 1 Person_01 7\n")
    with pytest.raises(FileNotFoundError, match=r"pairs.txt:2: no image 7 of 'Person_01'"):
        sets.load_pairs(pairs)
    pairs.write_text("10 300\nPerson_00 1 2\n")
    with pytest.raises(ValueError, match="announces 6000 pairs, found 1"):
        sets.parse_pairs_txt(pairs)


def test_a_missing_lfw_named_photo_is_an_error_never_another_photo(tmp_path):
    write_faces(tmp_path, 2, 3)
    (tmp_path / "Person_00" / "Person_00_0002.jpg").unlink()  # e.g. its photo failed detection
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("Person_00 1 3\nPerson_00 1 2\n")  # image 2 would be Person_00_0003.jpg in sorted order
    with pytest.raises(FileNotFoundError, match=r"pairs.txt:2: no image 2 of 'Person_00': \S*Person_00_0002.jpg "
                                                 r"does not exist \(images are resolved by name only\)$") as error:
        sets.load_pairs(pairs)
    assert "\n" not in str(error.value)
    assert sets.numbered_images(tmp_path, "Person_00") == [1, 3]
    pairs.write_text("Person_00 1 3\n")
    images, _ = sets.load_pairs(pairs)
    expected = cv2.cvtColor(cv2.imread(str(tmp_path / "Person_00" / "Person_00_0003.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(images[1], expected)


def test_make_pairs_is_deterministic_balanced_and_identity_disjoint(tmp_path):
    root = write_faces(tmp_path, 24, 4)
    # In a folder of LFW-named images, only LFW names are reachable: never the n-th image instead.
    (root / "Person_00" / "Person_00_0004.jpg").rename(root / "Person_00" / "zz_extra.jpg")
    (root / "Person_01" / "Person_01_0001.jpg").rename(root / "Person_01" / "Person_01_x.jpg")
    assert sets.numbered_images(root, "Person_00") == [1, 2, 3]
    assert sets.numbered_images(root, "Person_01") == [2, 3, 4]
    folds = sets.make_pairs(root, num_pairs=120, folds=10, seed=0)
    assert folds == sets.make_pairs(root, num_pairs=120, folds=10, seed=0)
    assert folds != sets.make_pairs(root, num_pairs=120, folds=10, seed=1)
    seen = set()
    for fold in folds:
        assert [p.issame for p in fold] == [True] * 6 + [False] * 6
        assert all((p.name1 == p.name2) == p.issame for p in fold)
        names = {p.name1 for p in fold} | {p.name2 for p in fold}
        assert not names & seen
        seen |= names
        assert len({(p.name1, p.n1, p.name2, p.n2) for p in fold}) == 12
    sets.write_pairs_txt(root / "pairs.txt", folds)
    assert (root / "pairs.txt").read_text().startswith("10\t6\n")
    assert sets.parse_pairs_txt(root / "pairs.txt") == [p._replace(line=i + 2) for i, p in enumerate(sum(folds, []))]
    images, issame = sets.load_verification_set(root)
    assert images.shape == (240, 16, 16, 3) and issame.sum() == 60
    with pytest.raises(ValueError, match="multiple of 2 \\* folds"):
        sets.make_pairs(root, num_pairs=125)
    with pytest.raises(ValueError, match="distinct pairs exist"):
        sets.make_pairs(root, num_pairs=2000)


def py2_pickle(items, issame):
    """(list, list) pickled as Python 2 did at protocol 2: str as BINSTRING, numpy.core array globals."""

    def string(data):
        return b"T" + struct.pack("<I", len(data)) + data

    def array(buffer):
        data = buffer.tobytes()
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b") + b"\x87R(K\x01J"
                + struct.pack("<i", len(data)) + b"\x85cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R(K\x03"
                + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + string(data) + b"tb")

    body = b"".join(string(item) if isinstance(item, bytes) else array(item) for item in items)
    flags = b"".join(b"\x88" if s else b"\x89" for s in issame)
    return b"\x80\x02](" + body + b"e](" + flags + b"e\x86."


@pytest.mark.parametrize("style", ["protocol2", "protocol4", "protocol5", "python2"])
def test_bin_with_numpy_buffers_loads_in_every_pickle_style(tmp_path, style):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(4)]
    encoded = [cv2.imencode(".png", image[:, :, ::-1])[1] for image in images]  # lossless, RGB → BGR for cv2
    items = [encoded[0].tobytes(), encoded[1], encoded[2].tobytes(), encoded[3].reshape(-1)]
    issame = [True, np.bool_(False)]
    path = tmp_path / "set.bin"
    if style == "python2":
        path.write_bytes(py2_pickle(items, issame))
    else:
        path.write_bytes(pickle.dumps((items, issame), protocol=int(style[-1])))
    loaded, loaded_issame = sets.load_verification_set(path)
    np.testing.assert_array_equal(loaded, np.stack(images))
    assert loaded_issame.tolist() == [True, False]


@pytest.mark.parametrize("call", ["os.system", "builtins.open"])
def test_malicious_bin_is_refused_without_running_anything(tmp_path, call):
    import builtins
    import os

    def payload(target):
        function, arguments = (os.system, (f"touch {target}",)) if call == "os.system" else (builtins.open, (str(target), "w"))

        class Payload:
            def __reduce__(self):
                return function, arguments

        return pickle.dumps(([Payload(), b"x"], [True]), protocol=4), f"{function.__module__}.{function.__name__}"

    control, _ = payload(tmp_path / "control")
    pickle.loads(control)  # the plain unpickler runs the payload
    assert (tmp_path / "control").exists()
    path, target = tmp_path / "evil.bin", tmp_path / "created"
    data, name = payload(target)
    path.write_bytes(data)
    with pytest.raises(sets.UnsafeBinError, match=rf"evil.bin: refusing to load global {name} "):
        sets.load_verification_set(path)
    assert not target.exists()


def test_damaged_bin_gets_a_one_line_error(tmp_path):
    path = tmp_path / "broken.bin"
    path.write_bytes(pickle.dumps(([b"not an image", b"x"], [True]), protocol=4)[:-5])
    with pytest.raises(ValueError, match="broken.bin: not a readable pickle"):
        sets.load_bin(path)
    path.write_bytes(pickle.dumps(([b"not an image", b"x"], [True]), protocol=4))
    with pytest.raises(ValueError, match="broken.bin: image 0: not a decodable image"):
        sets.load_bin(path)


def test_a_malicious_bin_is_refused_in_one_line_by_run_and_eval(tmp_path, repo_root, monkeypatch):
    """At load, before any data or model is prepared: tools/run.py's check and tools/eval.py's inputs."""
    import os

    from tools import eval as eval_tool
    from tools import run as run_tool

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'created'}",)

    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(([Payload(), b"x"], [True]), protocol=4))
    monkeypatch.chdir(repo_root)
    system = f"{os.system.__module__}.system"
    expected = rf"^error: data.val.evil='{evil}': refusing to load global {system} .*$"
    with pytest.raises(SystemExit, match=expected):
        run_tool.main(["experiments/demo_synth_mfn_arc.py", "--check", "--set", f"data.val.evil={evil}",
                       "--set", f"data.cache_dir={tmp_path / 'cache'}"])
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("checked after the sets")
    with pytest.raises(SystemExit, match=rf"^error: {evil}: refusing to load global {system} .*$"):
        eval_tool.main(["--model", str(not_a_model), "--bin", str(evil), "--out", str(tmp_path / "r.json")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.bin", "model.keras"]  # nothing ran, nothing written


def test_a_val_set_with_an_image_cut_short_stops_the_run_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    """An image that does not decode in a data.val folder is named when the sets load, not at the first
    evaluation, and the run directory is never written."""
    import cv2
    from test_distribute import TINY_EXPERIMENT

    from tools import run as run_tool

    experiment = tmp_path / "tiny.py"
    experiment.write_text(TINY_EXPERIMENT)
    val = tmp_path / "val"
    for person in ("Ann", "Bob"):
        for k in (1, 2):
            (val / person).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(val / person / f"{person}_{k:04d}.jpg"), np.full((32, 32, 3), 60 * k, np.uint8))
    (val / "pairs.txt").write_text("Ann\t1\t2\nAnn\t1\tBob\t1\n")
    cut = val / "Bob" / "Bob_0001.jpg"
    cut.write_bytes(cut.read_bytes()[:-40])  # no end-of-image marker: OpenCV would decode the rest as grey
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=rf"^error: data.val\['cut'\]: {cut}: .*$"):
        run_tool.main([str(experiment), "--set", f"data.val.cut={val}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                       "--work-dir", str(tmp_path / "runs")])
    assert not (tmp_path / "runs" / "tiny_cnn_arc" / "config.json").exists()
