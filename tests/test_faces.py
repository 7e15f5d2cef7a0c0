"""Face alignment, MTCNN detection, the batch cropping job and tools/verify.py, on real photos."""
import csv
import importlib.util
import json

import cv2
import numpy as np
import pytest

from arcface_keras.faces import align, detect, photo
from arcface_keras.faces.preprocess import (
    CropOptions, crop_photo, identity_of, jpeg_bytes, output_path, preprocess, read_rgb, write_rgb,
)

skimage_data = pytest.importorskip("skimage.data")


def load_tool(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", repo_root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def similarity_matrix(angle_degrees, scale, shift):
    angle = np.deg2rad(angle_degrees)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rotation, np.array(shift, float)[:, None]])


def blob_centroid(image):
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    weights = image.astype(np.float64)
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


@pytest.fixture(scope="module")
def astronaut():
    image = skimage_data.astronaut()
    return image, detect.pick_face(detect.detect(image))


# Alignment geometry (no detector)


@pytest.mark.parametrize("size", [(112, 112), (112, 96)])
def test_align_face_brings_transformed_landmarks_back_to_template(size):
    target = align.template(size)
    forward = similarity_matrix(23.0, 2.7, (130.0, 45.0))
    landmarks = align.apply_transform(forward, target)
    estimated = align.similarity_transform(landmarks, target)
    assert np.abs(align.apply_transform(estimated, landmarks) - target).max() < 0.5

    # The warp itself: a blob drawn at each landmark lands on its template point.
    for point, expected in zip(landmarks, target):
        canvas = np.zeros((500, 500), np.float32)
        cv2.circle(canvas, (int(round(point[0] * 16)), int(round(point[1] * 16))), 5 * 16, 1.0, -1, cv2.LINE_AA, shift=4)
        crop = align.align_face(canvas, landmarks, size)
        assert crop.shape == size
        assert np.linalg.norm(blob_centroid(crop) - expected) < 0.5


def test_similarity_transform_never_reflects():
    mirrored = align.ARCFACE_TEMPLATE * [-1.0, 1.0] + [112.0, 0.0]
    matrix = align.similarity_transform(mirrored, align.ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0
    with pytest.raises(ValueError, match="coincide"):
        align.similarity_transform(np.ones((5, 2)), align.ARCFACE_TEMPLATE)


def test_template_for_112x96_is_shifted_by_8():
    np.testing.assert_allclose(align.template((112, 96)), align.ARCFACE_TEMPLATE - [8.0, 0.0])
    assert align.parse_size("112x96") == (112, 96) and align.parse_size("112") == (112, 112)
    with pytest.raises(ValueError, match="112x96"):
        align.parse_size("big")


def red_patch_photo(tmp_path):
    """A PNG written by OpenCV (BGR on disk) with a pure red square on gray; returns its path and the box."""
    bgr = np.full((200, 300, 3), 90, np.uint8)
    bgr[80:120, 150:190] = (0, 0, 255)
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    return path, (150, 80, 40, 40)


def assert_red(pixel_rgb):
    assert pixel_rgb[0] > 200 and pixel_rgb[1] < 60 and pixel_rgb[2] < 60, pixel_rgb


def test_box_crop_keeps_colours_and_margin(tmp_path):
    path, box = red_patch_photo(tmp_path)
    image = read_rgb(path)
    crop = align.crop_box(image, box, margin=0.5, size=(112, 112))
    # The box is enlarged by half its size on each side: the patch fills the middle half.
    assert_red(crop[56, 56])
    assert_red(crop[30, 30])
    assert_red(crop[81, 81])
    assert crop[20, 20, 0] == 90 and crop[91, 91, 0] == 90
    write_rgb(tmp_path / "out" / "crop.jpg", crop)
    assert_red(read_rgb(tmp_path / "out" / "crop.jpg")[56, 56])
    # Near the border the crop is padded with black, not shifted.
    corner = align.crop_box(image, (0, 0, 40, 40), margin=0.5, size=(112, 112))
    assert corner[5, 5].max() == 0 and corner[60, 60, 0] == 90
    assert align.crop_box(image, box, margin=0.0, size=(112, 96)).shape == (112, 96, 3)


def test_alignment_keeps_colours(tmp_path):
    path, _ = red_patch_photo(tmp_path)
    image = read_rgb(path)
    # Landmarks placed so that the template's nose falls in the middle of the red square.
    shift = np.array([170.0, 100.0]) - align.ARCFACE_TEMPLATE[2]
    crop = align.align_face(image, align.ARCFACE_TEMPLATE + shift)
    nose = np.round(align.ARCFACE_TEMPLATE[2]).astype(int)
    assert_red(crop[nose[1], nose[0]])
    write_rgb(tmp_path / "aligned.jpg", crop)
    assert_red(read_rgb(tmp_path / "aligned.jpg")[nose[1], nose[0]])


# MTCNN on a real photo


def test_mtcnn_finds_the_astronaut_and_alignment_puts_eyes_on_template(astronaut):
    image, face = astronaut
    assert face is not None and face.confidence > 0.9
    assert face.landmarks.shape == (5, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and max(left_eye[1], right_eye[1]) < nose[1] < mouth_left[1]

    crop = align.align_face(image, face.landmarks)
    again = detect.pick_face(detect.detect(crop))
    assert again is not None
    target = align.template()
    assert np.abs(again.landmarks[:2] - target[:2]).max() < 4.0
    # Closer still to where the similarity transform put the photo's own eyes.
    mapped = align.apply_transform(align.similarity_transform(face.landmarks, target), face.landmarks)
    assert np.linalg.norm(again.landmarks[:2] - mapped[:2], axis=1).max() < 2.0


def test_reduced_jpeg_decoding_keeps_pixel_centres():
    # A bright 8x8 square centred at (700.5, 301.5) of a 1600x1200 JPEG, found again at 1/1 .. 1/8 of its size.
    image = np.zeros((1200, 1600, 3), np.uint8)
    image[298:306, 697:705] = 255
    data = jpeg_bytes(image, quality=100)
    for reduction in (1, 2, 4, 8):
        reduced = photo.decode(data, reduction)
        assert reduced.shape == (1200 // reduction, 1600 // reduction, 3)
        centre = blob_centroid(reduced[..., 0].astype(np.float64))
        np.testing.assert_allclose(photo.to_photo(centre[None], reduction)[0], (700.5, 301.5), atol=0.5)
    copy, factors = photo.shrink(image, 400)
    assert copy.shape == (300, 400, 3)
    np.testing.assert_allclose(photo.to_photo(blob_centroid(copy[..., 0])[None], factors)[0], (700.5, 301.5), atol=0.5)
    np.testing.assert_allclose(photo.from_photo(photo.to_photo([[3.0, 4.0]], factors), factors), [[3.0, 4.0]])


def test_a_large_photo_is_detected_on_a_bounded_copy_and_cropped_from_the_pixels_it_needs(astronaut):
    image, _ = astronaut
    big = cv2.resize(image, (3072, 3072), interpolation=cv2.INTER_CUBIC)  # the face is about 500 pixels
    data = jpeg_bytes(big)
    copy, factors, full = photo.detection_copy(data)
    assert max(copy.shape[:2]) == photo.MAX_DETECT_SIDE and full is None  # never decoded in full to detect
    np.testing.assert_allclose(factors, 3072 / photo.MAX_DETECT_SIDE)
    assert photo.warp_source(data, 0.14)[0].shape == (768, 768, 3)  # 1/4: 0.14 * 4 <= 1 < 0.14 * 8
    crop = crop_photo(data, CropOptions())
    assert crop.reason == "" and crop.faces >= 1 and crop.image.shape == (112, 112, 3)
    again = detect.pick_face(detect.detect(crop.image))
    assert np.abs(again.landmarks[:2] - align.template()[:2]).max() < 4.0  # as the 512-pixel photo's crop
    # A photo no larger than the bound is decoded once, in full, and detected as it is.
    copy, factors, full = photo.detection_copy(jpeg_bytes(image))
    assert copy.shape == full.shape == image.shape and (factors == 1).all()


def test_pick_face_modes():
    small_sure = detect.Face((0, 0, 30, 30), 0.99, np.zeros((5, 2)))
    big_unsure = detect.Face((50, 50, 80, 90), 0.85, np.zeros((5, 2)))
    assert detect.pick_face([small_sure, big_unsure], "largest") is big_unsure
    assert detect.pick_face([small_sure, big_unsure], "confident") is small_sure
    assert detect.pick_face([], "largest") is None
    with pytest.raises(ValueError, match="largest"):
        detect.pick_face([small_sure], "biggest")
    # center: area minus twice the squared distance of the box centre from the photo's centre (insightface).
    centred = detect.Face((100, 100, 50, 50), 0.9, np.zeros((5, 2)))  # centre (125, 125): area 2,500
    beside = detect.Face((150, 110, 60, 60), 0.9, np.zeros((5, 2)))  # centre (180, 140): 3,600 - 2 * 3,250
    assert detect.pick_face([beside, centred], "center", (250, 250)) is centred
    assert detect.pick_face([beside, centred], "largest") is beside
    near = detect.Face((115, 95, 60, 60), 0.9, np.zeros((5, 2)))  # centre (145, 125): 3,600 - 2 * 400 > 2,500
    assert detect.pick_face([centred, near], "center", (250, 250, 3)) is near
    with pytest.raises(ValueError, match="shape"):
        detect.pick_face([centred], "center")


def test_center_crop_is_insightfaces_crop_without_a_face():
    photo_250 = np.arange(250 * 250 * 3, dtype=np.uint32).reshape(250, 250, 3).astype(np.uint8)
    # 250 px: inset 15, widened by 22 on each side: clipped to the whole photo.
    np.testing.assert_array_equal(align.center_crop(photo_250), cv2.resize(photo_250, (112, 112)))
    wide = np.random.default_rng(0).integers(0, 256, (400, 800, 3), dtype=np.uint8)
    expected = cv2.resize(wide[3:397, 28:772], (96, 112))  # inset 25 and 50, widened by 22: rows 3..397, columns 28..772
    np.testing.assert_array_equal(align.center_crop(wide, (112, 96)), expected)


# The batch job


def test_identity_and_output_paths():
    assert identity_of("alice/session1/a.png") == "alice"
    assert identity_of("loose.jpg") is None
    assert identity_of("all/bob_0001.jpg", r"([a-z]+)_\d+\.jpg$") == "bob"
    assert output_path("alice/session1/a.png", "alice").as_posix() == "alice/session1/a.jpg"
    assert output_path("all/bob_0001.jpg", "bob").as_posix() == "bob/all/bob_0001.jpg"


def read_failures(path):
    with open(path, newline="") as f:
        return {(row["path"], row["reason"]) for row in csv.DictReader(f)}


def test_preprocess_writes_good_crops_and_lists_failures(tmp_path, astronaut, repo_root, capsys):
    image, face = astronaut
    raw = tmp_path / "raw"
    (raw / "alice" / "session1").mkdir(parents=True)
    (raw / "bob").mkdir()
    (raw / "carol" / "empty").mkdir(parents=True)  # an identity folder without images
    cv2.imwrite(str(raw / "alice" / "session1" / "astronaut.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(raw / "bob" / "small.png"), cv2.cvtColor(cv2.resize(image, (200, 200)), cv2.COLOR_RGB2BGR))
    (raw / "alice" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 20)
    whole = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
    (raw / "alice" / "cut.jpg").write_bytes(whole[: len(whole) * 4 // 5])  # OpenCV decodes the face in its top part
    (raw / "bob" / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(raw / "bob" / "gray.jpg"), np.full((160, 120, 3), 128, np.uint8))
    cv2.imwrite(str(raw / "loose.jpg"), np.full((16, 16, 3), 128, np.uint8))

    tool = load_tool(repo_root, "preprocess")
    argv = [str(raw), str(tmp_path / "aligned"), "--min-face", "60", "--no-progress"]
    report = tool.main(argv)
    expected_failures = {
        ("alice/corrupt.jpg", "unreadable"),
        ("alice/cut.jpg", "unreadable"),
        ("bob/empty.jpg", "empty_file"),
        ("bob/gray.jpg", "no_face"),
        ("bob/small.png", "face_too_small"),
        ("loose.jpg", "no_identity"),
        ("carol/", "no_image_files"),
    }
    assert read_failures(tmp_path / "aligned_failures.csv") == expected_failures
    assert report["written"] == 1 and report["images"] == 7 and report["empty_identities"] == ["carol"]
    assert report["failed"] == {"empty_file": 1, "face_too_small": 1, "no_face": 1, "no_identity": 1, "unreadable": 2}
    assert report["fallback"] == {} and report["several_faces"] == 0
    printed = capsys.readouterr().out
    assert "1 written" in printed and "1 identity folder without images (carol)" in printed

    # The crop is the aligned face in the right colour order (the JPEG round trip costs a little).
    out = tmp_path / "aligned" / "alice" / "session1" / "astronaut.jpg"
    written = read_rgb(out)
    expected = align.align_face(image, face.landmarks).astype(float)
    assert written.shape == (112, 112, 3)
    assert np.abs(written - expected).mean() < 4
    assert np.abs(written - expected[:, :, ::-1]).mean() > 3 * np.abs(written - expected).mean()

    # Resume leaves the existing crop alone and retries only the rest.
    stamp = out.stat().st_mtime_ns
    report = tool.main(argv + ["--resume", "--failures", str(tmp_path / "second.csv")])
    assert report["written"] == 0 and report["exists"] == 1
    assert out.stat().st_mtime_ns == stamp
    assert read_failures(tmp_path / "second.csv") == expected_failures


def test_preprocess_with_two_workers_reports_every_file(tmp_path):
    raw = tmp_path / "raw"
    for person in ("a", "b", "c"):
        (raw / person).mkdir(parents=True)
        (raw / person / "empty.jpg").write_bytes(b"")
        (raw / person / "broken.png").write_bytes(b"\x89PNG garbage")
    (raw / "a" / "broken.jpg").write_bytes(b"\xff\xd8 garbage")  # would be written to the same a/broken.jpg
    report = preprocess(raw, tmp_path / "out", CropOptions(), workers=2, progress=False)
    assert report["failed"] == {"empty_file": 3, "unreadable": 3, "same_output": 1}
    failures = read_failures(tmp_path / "out_failures.csv")
    assert len(failures) == 7 and ("a/broken.png", "same_output") in failures


def test_preprocess_reads_every_opencv_format(tmp_path, astronaut, repo_root, capsys):
    image, _ = astronaut
    raw = tmp_path / "raw"
    for person, name in (("alice", "a.pgm"), ("bob", "b.TIF")):  # grey PGM, colour TIFF (upper-case suffix)
        (raw / person).mkdir(parents=True)
        pixels = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if name.endswith(".pgm") else image[:, :, ::-1]
        assert cv2.imwrite(str(raw / person / name), pixels)
    report = load_tool(repo_root, "preprocess").main([str(raw), str(tmp_path / "out"), "--no-progress"])
    assert report["images"] == 2 and report["written"] == 2
    assert (tmp_path / "out" / "alice" / "a.jpg").is_file() and (tmp_path / "out" / "bob" / "b.jpg").is_file()
    assert "2 written" in capsys.readouterr().out


def test_preprocess_flat_folder_needs_flat_and_then_crops_flat(tmp_path, astronaut, repo_root, capsys):
    image, _ = astronaut
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "me.png"), image[:, :, ::-1])
    cv2.imwrite(str(photos / "gray.jpg"), np.full((100, 100, 3), 128, np.uint8))
    tool = load_tool(repo_root, "preprocess")
    with pytest.raises(SystemExit, match="not in identity folders.*--flat") as exit_info:
        tool.main([str(photos), str(tmp_path / "crops"), "--no-progress"])
    assert exit_info.value.code not in (0, None) and "\n" not in str(exit_info.value.code)
    assert not (tmp_path / "crops").exists()

    report = tool.main([str(photos), str(tmp_path / "crops"), "--flat", "--no-progress"])
    assert report["written"] == 1 and report["failed"] == {"no_face": 1}
    assert sorted(p.name for p in (tmp_path / "crops").iterdir()) == ["me.jpg"]
    assert read_rgb(tmp_path / "crops" / "me.jpg").shape == (112, 112, 3)


def test_preprocess_that_writes_nothing_fails(tmp_path, repo_root):
    raw = tmp_path / "raw"
    (raw / "bob").mkdir(parents=True)
    cv2.imwrite(str(raw / "bob" / "gray.jpg"), np.full((100, 100, 3), 128, np.uint8))
    (raw / "bob" / "notes.txt").write_text("not an image")
    tool = load_tool(repo_root, "preprocess")
    with pytest.raises(SystemExit, match="no face crop written") as exit_info:
        tool.main([str(raw), str(tmp_path / "out"), "--no-progress"])
    assert exit_info.value.code not in (0, None)
    (tmp_path / "texts" / "bob").mkdir(parents=True)
    (tmp_path / "texts" / "bob" / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit, match="texts: no image files found"):
        tool.main([str(tmp_path / "texts"), str(tmp_path / "out"), "--no-progress"])


def test_crop_options_reject_unknown_modes():
    with pytest.raises(ValueError, match="align, box"):
        CropOptions(mode="warp")
    with pytest.raises(ValueError, match="largest"):
        CropOptions(pick="first")


# tools/verify.py


def tiny_embedder(path):
    import keras

    embedder = keras.Sequential([keras.Input((112, 112, 3)), keras.layers.AveragePooling2D(8), keras.layers.Flatten()])
    embedder.save(path)
    return path


def test_verify_takes_the_threshold_of_the_named_set_or_gives_no_verdict(tmp_path, astronaut, repo_root, capsys):
    image, _ = astronaut
    model = tiny_embedder(tmp_path / "embedder.keras")
    report = tmp_path / "eval_report.json"  # 'agedb' sorts first and sits beside the model: neither may matter
    report.write_text('{"sets": {"agedb": {"threshold": 1.9}, "lfw": {"threshold": 1.2}, "bad": {"error": "x"}}}')

    first = tmp_path / "astronaut.png"
    cv2.imwrite(str(first), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    turned = cv2.warpAffine(image[:, ::-1], cv2.getRotationMatrix2D((256, 256), 8, 1.0), (512, 512))
    second = tmp_path / "mirrored.jpg"
    cv2.imwrite(str(second), cv2.cvtColor(turned, cv2.COLOR_RGB2BGR))
    photos = [str(first), str(second), "--model", str(model)]

    tool = load_tool(repo_root, "verify")
    result = tool.main(photos + ["--report", str(report), "--set", "lfw"])
    assert result["threshold"] == pytest.approx(0.4) and "lfw" in result["source"]
    assert result["similarity"] > 0.95 and result["same"]
    assert "same" in capsys.readouterr().out
    assert tool.main(photos + ["--threshold", "0.99"])["same"] is (result["similarity"] >= 0.99)

    unknown = tool.main(photos)
    assert unknown["threshold"] is None and unknown["same"] is None
    assert unknown["similarity"] == pytest.approx(result["similarity"])
    assert "no threshold known" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="no set 'cfp'; it has agedb, bad, lfw"):
        tool.main(photos + ["--report", str(report), "--set", "cfp"])
    with pytest.raises(SystemExit, match="'bad' has no threshold"):
        tool.main(photos + ["--report", str(report), "--set", "bad"])
    with pytest.raises(SystemExit) as exit_info:  # --report without --set: argparse's usage error
        tool.main(photos + ["--report", str(report)])
    assert exit_info.value.code == 2
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.full((100, 100, 3), 128, np.uint8))
    with pytest.raises(SystemExit, match="gray.png: no face"):
        tool.main([str(first), str(gray), "--model", str(model), "--threshold", "0.5"])


def test_verify_sees_the_crop_that_preprocess_writes_and_evaluation_reads(tmp_path, astronaut, repo_root):
    from arcface_keras.data.verification import load_pairs

    image, _ = astronaut
    (tmp_path / "raw" / "ann").mkdir(parents=True)
    photo = tmp_path / "raw" / "ann" / "ann_0001.png"
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    load_tool(repo_root, "preprocess").main([str(tmp_path / "raw"), str(tmp_path / "aligned"), "--no-progress"])
    (tmp_path / "aligned" / "pairs.txt").write_text("ann 1 1\n")
    evaluated, _ = load_pairs(tmp_path / "aligned" / "pairs.txt")
    verified = load_tool(repo_root, "verify").aligned_face(photo, (112, 112), 20)
    np.testing.assert_array_equal(verified, evaluated[0])  # same detector, alignment, JPEG and decoder


# tools/lfw.py


def write_lfw_photos(raw, image):
    """An LFW-like tree: A (two photos of the astronaut), B (the astronaut alone, and in colour at the
    centre of a photo with a larger grey face beside it), C (two photos without a face)."""
    def save(name, n, pixels):
        (raw / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(raw / name / f"{name}_{n:04d}.jpg"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))

    save("A", 1, image)
    save("A", 2, cv2.warpAffine(image[:, ::-1], cv2.getRotationMatrix2D((256, 256), 8, 1.0), (512, 512)))
    head = image[20:230, 130:320]  # 210 x 190
    save("B", 1, head)
    two = np.full((480, 640, 3), 120, np.uint8)
    two[135:345, 225:415] = head  # centred
    grey = cv2.cvtColor(cv2.cvtColor(head, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    two[90:405, 0:285] = cv2.resize(grey, (285, 315))  # 1.5x larger, off-centre
    save("B", 2, two)
    save("C", 1, np.full((250, 250, 3), 128, np.uint8))
    ramps = np.mgrid[0:250, 0:250].astype(np.uint8)
    save("C", 2, np.dstack([ramps[0], ramps[1], 255 - ramps[0]]))


def test_lfw_tool_scores_every_pair_with_centre_crops_and_the_central_face(tmp_path, astronaut, repo_root, capsys):
    image, _ = astronaut
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_lfw_photos(raw, image)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t5\nA 1 2\nB 1 2\nC 1 2\nA 2 1\nB 2 1\nA 1 B 1\nA 2 B 2\nA 1 C 1\nB 2 C 2\nC 1 A 2\n")
    model = tiny_embedder(tmp_path / "embedder.keras")
    tool = load_tool(repo_root, "lfw")
    argv = [str(raw), "--pairs", str(pairs), "--model", str(model), "--out", str(out), "--no-progress"]
    report = tool.main(argv)
    printed = capsys.readouterr().out
    counts = report["counts"]
    assert counts["photos"] == 6 and counts["pairs_scored"] == 10 and counts["aligned"] == 4
    assert counts["center_crop"] == {"no_face": 2} and report["center_crops"] == ["C/C_0001.jpg", "C/C_0002.jpg"]
    assert report["several_faces"] == ["B/B_0002.jpg"] and counts["several_faces"] == 1
    for stage in ("pairs: 10 (5 same, 5 different) name 6 photos of 3 people", "crops: 6 photos, 4 aligned",
                  "2 centre crops (no_face 2)", "embed: 6 crops", "score: 10 pairs: accuracy"):
        assert stage in printed
    assert set(report["seconds"]) == {"pairs", "crops", "embed", "score"} and (out / "lfw_roc.png").is_file()
    assert json.loads((out / "lfw_report.json").read_text())["counts"] == counts

    # The face nearest the centre was kept (in colour), not the larger grey one.
    kept = read_rgb(out / "crops" / "B" / "B_0002.jpg").astype(float)
    assert np.abs(kept[..., 0] - kept[..., 2]).mean() > 20
    # A photo without a face: insightface's centre crop (a 250x250 photo: all of it), through the JPEG.
    ramps = read_rgb(raw / "C" / "C_0002.jpg")
    assert np.abs(read_rgb(out / "crops" / "C" / "C_0002.jpg").astype(float) - align.center_crop(ramps)).mean() < 2

    # A rerun with the same options reuses every crop and gives the same figures.
    again = tool.main(argv)
    assert again["counts"]["reused"] == 6 and again["result"]["accuracy"] == report["result"]["accuracy"]

    # A photo pairs.txt names but the folder lacks: one line naming it, before any crop is made.
    pairs.write_text("A 1 2\nA 1 9\n" + "A 1 2\n" * 8)
    with pytest.raises(SystemExit, match=r"pairs.txt:2: no image 9 of 'A': \S*A_0009.jpg does not exist") as exit_info:
        tool.main(argv[:-2] + [str(tmp_path / "out2"), "--no-progress"])
    assert "\n" not in str(exit_info.value.code) and not (tmp_path / "out2").exists()


@pytest.mark.parametrize("name", ["preprocess", "verify", "lfw"])
def test_tool_help(repo_root, name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_tool(repo_root, name).main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
