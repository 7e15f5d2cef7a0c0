"""Where LFW accuracy goes: each factor of cropping and embedding changed alone, on the same 7,701 photos
with the same model (insightface's w600k_mbf through onnxruntime), scored with the project's 10 folds.

    python bench/lfw_factors.py --work DIR [--raw DIR] [--pairs FILE] [--onnx FILE]
        [--scrfd scrfd_500m_bnkps.onnx] [--only NAME ...]

The baseline is what tools/lfw.py crops, kept in memory: MTCNN (faces/detect.py), the face nearest
the centre weighted by size (centre crop when there is none), the project's similarity estimate,
bilinear warp with black borders; RGB, (x − 127.5)/127.5, the mirror's embedding added. Each row
changes one thing (FACTORS). Detections (one pass per detector: about 10 minutes for MTCNN on two
idle cores) and embeddings (about 5 minutes per set of crops with mirrors) are cached under --work;
a crop identical to the baseline's reuses its embedding. The scrfd row needs insightface's SCRFD-500M
(buffalo_s' det_500m.onnx), run as insightface's model_zoo/scrfd.py runs it: the photo letterboxed
into 640x640, (x − 127.5)/128, score threshold 0.5, NMS 0.4; without the file the row is skipped.
Material paths default to the data root as in bench/bench_lfw.py. Prints a Markdown table (also
<work>/factors.md and .json, rewritten after each row).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import hashlib  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.bench_lfw import DATA, missing_material  # noqa: E402
from arcface_keras.data.decode import decode_rgb  # noqa: E402
from arcface_keras.data.verification import pair_paths, parse_pairs_txt  # noqa: E402
from arcface_keras.evaluation.verification import evaluate, l2_normalize  # noqa: E402
from arcface_keras.faces import align, detect  # noqa: E402
from arcface_keras.faces.preprocess import jpeg_bytes  # noqa: E402
from arcface_keras.io import write_json, write_text  # noqa: E402

# name: (what changes, detector, crop keywords, embedding keywords)
FACTORS = {
    "base": ("baseline: tools/lfw.py's crops, in memory", "mtcnn", {}, {}),
    "largest": ("the largest face kept instead (tools/preprocess.py's default)", "mtcnn", {"pick": "largest"}, {}),
    "jpeg": ("crops stored as JPEG q95 and decoded by the project's decoder (what tools/lfw.py embeds)", "mtcnn",
             {"jpeg": 95}, {}),
    "scrfd": ("landmarks of SCRFD-500M (insightface's buffalo_s detector)", "scrfd", {}, {}),
    "skimage": ("skimage's SimilarityTransform (insightface's estimate_norm) for the similarity", "mtcnn",
                {"estimator": "skimage"}, {}),
    "shift": ("landmarks moved by +0.5 pixel in x and y (a half-pixel convention)", "mtcnn", {"shift": 0.5}, {}),
    "cubic": ("bicubic warp instead of bilinear", "mtcnn", {"interpolation": cv2.INTER_CUBIC}, {}),
    "replicate": ("border replicated instead of black", "mtcnn", {"border": cv2.BORDER_REPLICATE}, {}),
    "bgr": ("BGR channel order into the model (no flip)", "mtcnn", {}, {"bgr": True, "flip": False}),
    "std128": ("(x − 127.5) / 128 instead of / 127.5 (no flip)", "mtcnn", {}, {"std": 128.0, "flip": False}),
    "center_crop": ("every photo given the fallback centre crop (no alignment)", "mtcnn", {"fallback_only": True}, {}),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=pathlib.Path, required=True, help="cache of detections, embeddings and results")
    parser.add_argument("--raw", type=pathlib.Path, default=DATA / "lfw/lfw-deepfunneled")
    parser.add_argument("--pairs", type=pathlib.Path, default=DATA / "lfw/pairs.txt")
    parser.add_argument("--onnx", type=pathlib.Path, default=DATA / "models/buffalo_s/w600k_mbf.onnx")
    parser.add_argument("--scrfd", type=pathlib.Path, default=DATA / "models/buffalo_s/det_500m.onnx",
                        help="scrfd_500m_bnkps.onnx (buffalo_s' det_500m.onnx)")
    parser.add_argument("--only", nargs="+", choices=sorted(FACTORS), help="these rows (and the baseline)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    return parser.parse_args(argv)


class Photos:
    """The pair photos (relative paths, sorted) and the pairs as indices into them."""

    def __init__(self, raw, pairs_txt):
        paths, self.issame = pair_paths(parse_pairs_txt(pairs_txt), raw, pairs_txt)
        self.names = sorted({path.relative_to(raw).as_posix() for path in paths})
        index = {name: i for i, name in enumerate(self.names)}
        rows = np.array([index[path.relative_to(raw).as_posix()] for path in paths])
        self.first, self.second, self.raw = rows[0::2], rows[1::2], raw

    def read(self, i):
        return cv2.cvtColor(cv2.imread(str(self.raw / self.names[i])), cv2.COLOR_BGR2RGB)


def detections(photos, detector, args):
    """Rows of every face each detector finds in each photo, cached as <work>/detections_<detector>.npz."""
    path = args.work / f"detections_{detector}.npz"
    if path.is_file():
        cached = np.load(path)
        if list(cached["names"]) == photos.names:
            return np.split(cached["rows"], np.cumsum(cached["counts"])[:-1])
    run = mtcnn() if detector == "mtcnn" else scrfd(args.scrfd)
    began, found = time.perf_counter(), []
    for i in range(len(photos.names)):
        found.append(np.asarray(run(photos.read(i)), np.float64).reshape(-1, 15))
    print(f"  {detector}: {len(found)} photos detected in {time.perf_counter() - began:.0f} s", flush=True)
    np.savez(path, names=np.array(photos.names), counts=[len(f) for f in found], rows=np.vstack(found))
    return found


def mtcnn():
    from arcface_keras.faces import detect

    def run(image):
        return np.array([[*f.box[:2], f.box[0] + f.box[2], f.box[1] + f.box[3], f.confidence,
                          *f.landmarks[:, 0], *f.landmarks[:, 1]] for f in detect.detect(image)]).reshape(-1, 15)
    return run


def scrfd(model_path, size=640, threshold=0.5, nms_threshold=0.4):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]

    def run(image):
        scale = size / max(image.shape[:2])
        height, width = int(image.shape[0] * scale), int(image.shape[1] * scale)
        letterbox = np.zeros((size, size, 3), np.uint8)
        letterbox[:height, :width] = cv2.resize(image, (width, height))
        blob = ((letterbox.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = [output.reshape(-1, output.shape[-1]) for output in session.run(names, {session.get_inputs()[0].name: blob})]
        rows = []
        for k, stride in enumerate((8, 16, 32)):
            cells = size // stride
            centres = np.repeat(np.stack(np.mgrid[:cells, :cells][::-1], -1).reshape(-1, 2) * stride, 2, axis=0)
            keep = outputs[k][:, 0] >= threshold
            box, points = outputs[k + 3][keep] * stride, outputs[k + 6][keep] * stride
            c = centres[keep].astype(np.float32)
            rows.append(np.hstack([c - box[:, :2], c + box[:, 2:], outputs[k][keep],
                                   c[:, :1] + points[:, 0::2], c[:, 1:] + points[:, 1::2]]))
        rows = np.vstack(rows)
        rows[:, [0, 1, 2, 3, *range(5, 15)]] /= scale
        return rows[nms(rows, nms_threshold)]
    return run


def nms(rows, threshold):
    """Indices kept by greedy non-maximum suppression (insightface's, inclusive pixel areas)."""
    x1, y1, x2, y2, score = rows[:, :5].T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = score.argsort()[::-1], []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[w * h / (areas[i] + areas[rest] - w * h) <= threshold]
    return keep


def as_faces(rows):
    return [detect.Face((r[0], r[1], r[2] - r[0], r[3] - r[1]), float(r[4]), np.stack([r[5:10], r[10:15]], 1))
            for r in rows]


def crops(photos, found, pick="center", estimator="ours", shift=0.0, interpolation=cv2.INTER_LINEAR,
          border=cv2.BORDER_CONSTANT, jpeg=None, fallback_only=False):
    """(N, 112, 112, 3) uint8 crops of the photos with one thing changed."""
    out = np.empty((len(photos.names), 112, 112, 3), np.uint8)
    for i, rows in enumerate(found):
        image = photos.read(i)
        face = None if fallback_only else detect.pick_face(as_faces(rows), pick, image.shape)
        if face is None:
            out[i] = align.center_crop(image)
        else:
            matrix = similarity(face.landmarks + shift, estimator)
            out[i] = cv2.warpAffine(image, matrix, (112, 112), flags=interpolation, borderMode=border, borderValue=0)
        if jpeg:
            out[i] = decode_rgb(jpeg_bytes(out[i], jpeg), photos.names[i])
    return out


def similarity(landmarks, estimator):
    if estimator == "ours":
        return align.similarity_transform(landmarks, align.ARCFACE_TEMPLATE)
    from skimage.transform import SimilarityTransform

    target = align.ARCFACE_TEMPLATE.astype(np.float32)  # as insightface's estimate_norm
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image 0.26 deprecates estimate()
        return SimilarityTransform.from_estimate(landmarks, target).params[:2]
    transform = SimilarityTransform()
    transform.estimate(landmarks, target)
    return transform.params[:2]


class Embedder:
    """w600k_mbf through onnxruntime: (embeddings, mirror embeddings) of uint8 RGB crops, cached by content."""

    def __init__(self, onnx_path, work, threads):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.log_severity_level = threads, 3
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.work, self.known = work, {}

    def __call__(self, images, bgr=False, std=127.5, flip=True):
        key = hashlib.sha1(images.tobytes() + repr((bgr, std, flip)).encode()).hexdigest()[:16]
        path = self.work / f"embeddings_{key}.npz"
        plain_input = not bgr and std == 127.5  # crops embedded before (the baseline's) are not embedded again
        if path.is_file():
            cached = np.load(path)
            plain, mirror = cached["plain"], cached["mirror"]
        else:
            plain, mirror = self.embed(images, bgr, std, flip, plain_input)
            np.savez(path, plain=plain, mirror=mirror)
        if plain_input:
            for image, p, m in zip(images, plain, mirror):
                self.known.setdefault(hashlib.sha1(image.tobytes()).digest(), (p, m if flip else None))
        return plain, mirror

    def embed(self, images, bgr, std, flip, reuse):
        plain, mirror = np.zeros((2, len(images), 512), np.float32)
        todo = np.ones(len(images), bool)
        for i, image in enumerate(images if reuse else ()):
            hit = self.known.get(hashlib.sha1(image.tobytes()).digest())
            if hit is not None and (hit[1] is not None or not flip):
                plain[i], mirror[i], todo[i] = hit[0], hit[1] if flip else 0, False
        for start in range(0, int(todo.sum()), 64):
            rows = np.flatnonzero(todo)[start:start + 64]
            batch = images[rows][..., ::-1] if bgr else images[rows]
            batch = ((batch.astype(np.float32) - 127.5) / std).transpose(0, 3, 1, 2)
            plain[rows] = self.run(batch)
            if flip:
                mirror[rows] = self.run(np.ascontiguousarray(batch[..., ::-1]))
        return plain, mirror

    def run(self, batch):
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: np.ascontiguousarray(batch)})[0]


def score(photos, plain, mirror, flip):
    embeddings = l2_normalize(plain + mirror if flip else plain)
    result = evaluate(embeddings[photos.first], embeddings[photos.second], photos.issame)
    return result["accuracy"], result["std"], int(round((1 - result["accuracy"]) * len(photos.issame)))


def row(name, photos, found, embedder, base):
    description, _, crop_keywords, embed_keywords = FACTORS[name]
    began = time.perf_counter()
    images = crops(photos, found, **crop_keywords)
    plain, mirror = embedder(images, **embed_keywords)
    flip = embed_keywords.get("flip", True)
    accuracy, std, errors = score(photos, plain, mirror, flip)
    plain_accuracy, plain_std, _ = score(photos, plain, mirror, False)
    changed = int(sum(not np.array_equal(a, b) for a, b in zip(images, base))) if base is not None else 0
    print(f"  {name}: {100 * accuracy:.2f} [{time.perf_counter() - began:.0f} s]", flush=True)
    return {"factor": name, "what": description, "flip": flip, "accuracy": accuracy, "std": std,
            "no_flip": plain_accuracy, "no_flip_std": plain_std, "wrong_pairs": errors, "crops_changed": changed}, images


def markdown(rows):
    base = rows[0]
    lines = ["| factor | changed | accuracy ± std | Δ | without flip | crops changed |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        value = r["accuracy"] if r["flip"] else r["no_flip"]
        reference = base["accuracy"] if r["flip"] else base["no_flip"]
        shown = f"{100 * value:.2f} ± {100 * (r['std'] if r['flip'] else r['no_flip_std']):.2f}" if r["flip"] else "–"
        lines.append(f"| {r['factor']} | {r['what']} | {shown} | {100 * (value - reference):+.2f} | "
                     f"{100 * r['no_flip']:.2f} ± {100 * r['no_flip_std']:.2f} | {r['crops_changed']:,} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    reason = missing_material(args)
    if reason:
        print(f"LFW factors skipped: {reason}")
        return None
    args.work.mkdir(parents=True, exist_ok=True)
    photos, embedder = Photos(args.raw, args.pairs), Embedder(args.onnx, args.work, args.threads)
    available = {"mtcnn": True, "scrfd": args.scrfd.is_file()}
    names = ["base"] + [n for n in (args.only or FACTORS) if n != "base"]
    rows, base = [], None
    for name in names:
        detector = FACTORS[name][1]
        if not available[detector]:
            print(f"  {name}: skipped (no {detector} files given)")
            continue
        result, images = row(name, photos, detections(photos, detector, args), embedder, base)
        base = images if base is None else base
        rows.append(result)
        write_text(args.work / "factors.md", markdown(rows) + "\n")  # after each row: a long run shows progress
        write_json(args.work / "factors.json", rows)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
