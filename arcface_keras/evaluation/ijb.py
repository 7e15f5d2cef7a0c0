"""IJB-B / IJB-C template evaluation as insightface runs it, with its choices as options.

Each loose crop is aligned to the ArcFace template from its 5 landmarks and embedded (its mirror's
embedding added with `flip`). An image's feature is that raw sum, divided by its norm when
`normalize_images`, times its detector score when `detector_score`. Images of one media (a photo,
or the frames of one video) in a template are averaged; a template is the sum of its media,
L2-normalised. Insightface's default is flip on, detector score on, no normalisation.

1:1 verification: cosine of the two templates of each listed pair, and TAR at each FAR read two ways:
- insightface's (`tar_at_far_insightface`, what published tables quote): eval_ijbc.py takes
  `sklearn.metrics.roc_curve(label, score)` with its default drop_intermediate=True and reads the
  vertex whose FAR is nearest the target, the highest TAR among equally near ones. The ROC points are
  the distinct scores (accept score >= t), highest first; an inner point is dropped when both its
  false- and true-positive counts continue their neighbours in a straight line (zero second
  difference), then (0, 0) is put first: sklearn's rule from 0.17 (2015) to today (`insightface_roc`).
  A dropped point can be nearer the target than any vertex, so this read-out may take a TAR from a
  FAR above the target.
- the conservative one (`tar_at_far_conservative`): the largest TAR whose FAR is at most the target,
  on the full ROC.

1:N identification, open-set, per gallery (G1, G2; IJB-B S1, S2) and their mean: a probe whose
subject is in the gallery is a mated search, any other a non-mated one. Rank-k: share of mated searches whose mate
(the best of the subject's gallery templates) scores above all but fewer than k non-mate templates;
a tie with a non-mate counts against the mate. TPIR at FPIR x: the threshold t is the
(floor(x * N) + 1)-th highest top score of the N non-mated searches (so at most x * N of them score
above it); TPIR is the share of mated searches ranked first with a mate score above t.
"""
import concurrent.futures
import time

import cv2
import numpy as np

from arcface_keras.data.integrity import UnreadableImage, read_bgr_file
from arcface_keras.evaluation.verification import roc_curve
from arcface_keras.evaluation.verification import tar_at_far as verification_tar
from arcface_keras.faces.align import align_face

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FPIRS = (1e-2, 1e-1)
RANKS = (1, 5, 10)
IDENTIFICATION = "identification_open_set_per_gallery"
READ_OUTS = {  # what each key of a report means, written into it
    "tar_at_far_insightface": "TAR at the vertex nearest the FAR on sklearn.metrics.roc_curve(drop_intermediate="
                              "True), as insightface's eval_ijbc.py reads it (published tables)",
    "tar_at_far_conservative": "largest TAR with FAR <= the target, on the full ROC",
    IDENTIFICATION: "1:N open-set search of each gallery alone (and their mean), not insightface's merged gallery",
}


def _load_aligned(path, landmarks, size):
    """The aligned RGB crop of an image file; None when it is missing, cut short or undecodable."""
    try:
        image = read_bgr_file(path)
    except (OSError, UnreadableImage):
        return None
    return align_face(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), landmarks, size)


def embed_protocol(embedder, protocol, batch_size=128, flip=True, dtype=np.float16, workers=4, progress=None):
    """Raw flip-summed features (N, D) of every image, computed in batches, and a mask of the images read.

    Images that cannot be read (missing, cut short, undecodable) keep a zero feature and are marked False
    (reported, not fatal).
    Crops of the next batch are read and aligned by `workers` threads while the model runs.
    """
    from arcface_keras.evaluation.embed import raw_embeddings

    size = tuple(d or 112 for d in embedder.input_shape[1:3])
    folder = protocol.root / "loose_crop"
    count = len(protocol.names)
    features = np.zeros((count, embedder.output_shape[-1]), dtype)
    readable = np.zeros(count, bool)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        def submit(start):
            stop = min(start + batch_size, count)
            return start, [pool.submit(_load_aligned, folder / protocol.names[i], protocol.landmarks[i], size)
                           for i in range(start, stop)]

        pending = submit(0) if count else None
        while pending:
            start, futures = pending
            pending = submit(start + batch_size) if start + batch_size < count else None
            crops = [f.result() for f in futures]
            ok = np.array([c is not None for c in crops])
            readable[start:start + len(crops)] = ok
            if ok.any():
                batch = np.stack([c for c in crops if c is not None])
                features[start + np.flatnonzero(ok)] = raw_embeddings(embedder, batch, len(batch), flip)
            if progress:
                progress(start + len(crops), count)
    return features, readable


def image_weights(features, scores, normalize_images=False, detector_score=True, chunk=65536):
    """Per-image factor of the pooling: 1/‖feature‖ with `normalize_images`, × detector score."""
    weights = np.asarray(scores, np.float64).copy() if detector_score else np.ones(len(features))
    if normalize_images:
        for start in range(0, len(features), chunk):
            norms = np.linalg.norm(features[start:start + chunk].astype(np.float64), axis=1)
            weights[start:start + chunk] /= np.maximum(norms, 1e-12)
    return weights


def pool_templates(features, templates, medias, weights, chunk=64):
    """(sorted template ids, L2-normalised template features float32): weighted images averaged per
    (template, media), media summed per template. Done `chunk` feature columns at a time."""
    order = np.lexsort((medias, templates))
    t_sorted, m_sorted = templates[order], medias[order]
    new_media = np.r_[True, (t_sorted[1:] != t_sorted[:-1]) | (m_sorted[1:] != m_sorted[:-1])]
    media_starts = np.flatnonzero(new_media)
    media_sizes = np.diff(np.r_[media_starts, len(order)])
    media_templates = t_sorted[media_starts]
    template_starts = np.flatnonzero(np.r_[True, media_templates[1:] != media_templates[:-1]])
    pooled = np.empty((len(template_starts), features.shape[1]), np.float64)
    w = np.asarray(weights, np.float64)[order, None]
    for col in range(0, features.shape[1], chunk):
        weighted = features[order, col:col + chunk].astype(np.float64) * w
        media_means = np.add.reduceat(weighted, media_starts, axis=0) / media_sizes[:, None]
        pooled[:, col:col + chunk] = np.add.reduceat(media_means, template_starts, axis=0)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return media_templates[template_starts], (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def template_rows(template_ids, wanted):
    """Row of each wanted template id in the sorted `template_ids`; fails naming an unknown one."""
    rows = np.searchsorted(template_ids, wanted)
    rows = np.minimum(rows, len(template_ids) - 1)
    bad = template_ids[rows] != wanted
    if np.any(bad):
        raise ValueError(f"template {np.asarray(wanted)[bad].ravel()[0]} has no images")
    return rows


def pair_scores(template_ids, template_features, pairs, block=2048):
    """Cosine similarity (float32) of each template pair.

    Pairs are grouped by their first template; each block of `block` first templates is scored
    against all templates with one matrix product (IJB-C: 23,124 templates, 15.7M pairs), which
    reads far less memory than gathering two feature rows per pair.
    """
    rows = template_rows(template_ids, pairs)
    order = np.argsort(rows[:, 0], kind="stable")
    bounds = np.searchsorted(rows[order, 0], np.arange(0, len(template_ids) + block, block))
    scores = np.empty(len(pairs), np.float32)
    for number, start in enumerate(range(0, len(template_ids), block)):
        chosen = order[bounds[number]:bounds[number + 1]]
        if len(chosen):
            similarities = template_features[start:start + block] @ template_features.T
            scores[chosen] = similarities[rows[chosen, 0] - start, rows[chosen, 1]]
    return scores


def insightface_roc(scores, labels):
    """(fpr, tpr) of `sklearn.metrics.roc_curve(labels, scores)` with drop_intermediate=True, in numpy."""
    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    order = np.argsort(scores, kind="mergesort")[::-1]
    last = np.r_[np.flatnonzero(np.diff(scores[order])), len(scores) - 1]  # last pair of each distinct score
    tps = np.cumsum(labels[order], dtype=np.float64)[last]
    fps = 1.0 + last - tps
    if len(fps) > 2:
        keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1]


def tar_at_far(scores, labels, fars=FARS):
    """({"insightface": {"1e-06": TAR, ...}, "conservative": {...}}, fpr, tpr of the full ROC of `score >= t`)."""
    labels = np.asarray(labels, bool)
    fpr, tpr, _, false_positives = roc_curve(-np.asarray(scores, np.float64), labels)
    vertex_fpr, vertex_tpr = insightface_roc(scores, labels)
    tables = {"insightface": {}, "conservative": {}}
    for far in fars:
        gap = np.abs(vertex_fpr - far)
        nearest = len(gap) - 1 - np.argmin(gap[::-1])  # the last of the nearest: highest TAR
        tables["insightface"][f"{far:.0e}"] = float(vertex_tpr[nearest])
        tables["conservative"][f"{far:.0e}"] = verification_tar(tpr, false_positives, int((~labels).sum()), far)
    return tables, fpr, tpr


def _search_scores(probe_features, gallery_features, gallery_subjects, probe_subjects, chunk=4096):
    """Per probe: (is mated, mate score, non-mates scoring >= mate, top score)."""
    mated = np.isin(probe_subjects, gallery_subjects)
    mate = np.full(len(probe_features), -np.inf)
    ahead = np.zeros(len(probe_features), np.int64)
    top = np.empty(len(probe_features))
    for start in range(0, len(probe_features), chunk):
        sims = probe_features[start:start + chunk].astype(np.float64) @ gallery_features.T.astype(np.float64)
        same = probe_subjects[start:start + chunk, None] == gallery_subjects[None, :]
        top[start:start + chunk] = sims.max(axis=1)
        mate_scores = np.where(same, sims, -np.inf).max(axis=1)
        mate[start:start + chunk] = mate_scores
        ahead[start:start + chunk] = np.sum(~same & (sims >= mate_scores[:, None]), axis=1)
    return mated, mate, ahead, top


def identification(probe_features, probe_subjects, gallery_features, gallery_subjects, ranks=RANKS, fpirs=FPIRS):
    """Rank-k identification rates and TPIR at FPIR of one gallery (definitions in the module docstring)."""
    mated, mate, ahead, top = _search_scores(probe_features, gallery_features, gallery_subjects, probe_subjects)
    report = {"mated": int(mated.sum()), "non_mated": int((~mated).sum())}
    for rank in ranks:
        report[f"rank{rank}"] = float(np.mean(ahead[mated] < rank)) if mated.any() else None
    non_mated_top = np.sort(top[~mated])[::-1]
    for fpir in fpirs:
        key = f"tpir@fpir={fpir:.0e}"
        if not len(non_mated_top) or not mated.any():
            report[key] = None
            continue
        k = int(np.floor(fpir * len(non_mated_top)))
        threshold = non_mated_top[k] if k < len(non_mated_top) else -np.inf
        report[key] = float(np.mean((ahead[mated] == 0) & (mate[mated] > threshold)))
    return report


def identification_report(template_ids, template_features, galleries, probes):
    """{gallery: identification(...)} for each gallery, plus their "mean" over galleries."""
    probe_templates, probe_subjects = probes
    probe_features = template_features[template_rows(template_ids, probe_templates)]
    report = {}
    for name, (gallery_templates, gallery_subjects) in galleries.items():
        gallery_features = template_features[template_rows(template_ids, gallery_templates)]
        report[name] = identification(probe_features, probe_subjects, gallery_features, gallery_subjects)
    metrics = [k for k in next(iter(report.values())) if k not in ("mated", "non_mated")]
    report["mean"] = {k: (float(np.mean([r[k] for r in report.values()]))
                          if all(r[k] is not None for r in report.values()) else None) for k in metrics}
    return report


def pool_readable(protocol, features, readable, normalize_images=False, detector_score=True):
    """`pool_templates` over the readable images; a template left without any gets a zero feature
    (every score with it is 0). Returns (template ids, features, number of such templates)."""
    keep = np.flatnonzero(readable)
    weights = image_weights(features[keep], protocol.scores[keep], normalize_images, detector_score)
    found_ids, found = pool_templates(features[keep], protocol.templates[keep], protocol.medias[keep], weights)
    template_ids = np.unique(protocol.templates)
    template_features = np.zeros((len(template_ids), features.shape[1]), np.float32)
    template_features[np.searchsorted(template_ids, found_ids)] = found
    return template_ids, template_features, len(template_ids) - len(found_ids)


def score_protocol(protocol, features, readable=None, normalize_images=False, detector_score=True):
    """Pool templates and score the 1:1 and 1:N lists. Returns (report, (fpr, tpr), template ids, features)."""
    timings = {}
    begin = time.perf_counter()
    readable = np.ones(len(features), bool) if readable is None else readable
    template_ids, template_features, empty = pool_readable(protocol, features, readable, normalize_images,
                                                           detector_score)
    timings["pool_s"] = time.perf_counter() - begin
    begin = time.perf_counter()
    scores = pair_scores(template_ids, template_features, protocol.pairs)
    tables, fpr, tpr = tar_at_far(scores, protocol.labels)
    timings["verify_s"] = time.perf_counter() - begin
    report = {"templates": len(template_ids), "templates_without_images": empty, "pairs": len(scores),
              "genuine": int(protocol.labels.sum()), "read_outs": READ_OUTS,
              "tar_at_far_insightface": tables["insightface"], "tar_at_far_conservative": tables["conservative"],
              "auc": float(np.trapezoid(tpr, fpr))}
    if protocol.probes is not None:
        begin = time.perf_counter()
        report[IDENTIFICATION] = identification_report(template_ids, template_features, protocol.galleries,
                                                       protocol.probes)
        timings["identify_s"] = time.perf_counter() - begin
    report["timings"] = timings
    return report, (fpr, tpr), template_ids, template_features
