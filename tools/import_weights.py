"""Import an arcface_torch IResNet-18/34/50/100 (.pth state dict or .onnx file) as a .keras backbone.

    python tools/import_weights.py ms1mv3_r50/backbone.pth --out pretrained/ms1mv3_r50.keras
    python tools/import_weights.py glint360k_r100.onnx --out pretrained/glint360k_r100.keras --depth 100

Depth, width and embedding size are read from the weights (--depth/--width/--embedding-size make
a mismatch an error). The .pth is read without running any of its code. An ONNX source is checked
against onnxruntime on random images (largest difference of the normalised embeddings, with and
without flip, must be under 1e-4, or nothing is written). Use the result with
`--set model.pretrained=OUT` and a backbone {"type": "resnetNN", "padding": "symmetric"}.
"""
import argparse
import importlib.util
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from arcface_keras.evaluation.verification import l2_normalize  # noqa: E402
from arcface_keras.io import unwritable  # noqa: E402

TOLERANCE = 1e-4


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=pathlib.Path, help="arcface_torch backbone.pth (state dict) or .onnx file")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="the .keras backbone to write")
    parser.add_argument("--depth", type=int, choices=(18, 34, 50, 100), help="fail unless the weights have this depth")
    parser.add_argument("--width", type=float, help="fail unless the weights have this width (1.0: 64..512 channels)")
    parser.add_argument("--embedding-size", type=int, help="fail unless the weights have this embedding size")
    parser.add_argument("--input-size", type=int, default=112, help="square input size (arcface_torch's fc needs 112)")
    parser.add_argument("--check-batch", type=int, default=4, help="random images for the onnxruntime check")
    args = parser.parse_args(argv)
    if args.out.suffix != ".keras":
        parser.error(f"--out {args.out}: expected a .keras file name")
    problem = unwritable(args.out)
    if problem:
        parser.error(f"--out {problem}")
    if args.weights.suffix.lower() == ".onnx" and importlib.util.find_spec("onnxruntime") is None:
        parser.error(f"{args.weights}: an ONNX import is checked against onnxruntime: pip install onnxruntime")
    return args


def onnx_difference(model, onnx_path, batch):
    """Largest |Δ| of the normalised embeddings (plain and flip-summed) between Keras and onnxruntime."""
    import onnxruntime

    size = model.input_shape[1:3]
    images = np.random.default_rng(0).uniform(-1, 1, (batch, *size, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def both(batch_images):
        ours = np.asarray(model.predict_on_batch(batch_images), np.float64)
        theirs = session.run(None, {name: np.ascontiguousarray(batch_images.transpose(0, 3, 1, 2))})[0]
        return ours, np.asarray(theirs, np.float64)

    (ours, theirs), (ours_flip, theirs_flip) = both(images), both(np.ascontiguousarray(images[:, :, ::-1]))
    plain = np.abs(l2_normalize(ours) - l2_normalize(theirs)).max()
    flipped = np.abs(l2_normalize(ours + ours_flip) - l2_normalize(theirs + theirs_flip)).max()
    return float(max(plain, flipped))


def main(argv=None):
    args = parse_args(argv)
    from arcface_keras.pretrained.iresnet import import_iresnet

    try:
        model = import_iresnet(args.weights, (args.input_size, args.input_size), args.depth, args.width,
                               args.embedding_size)
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    report = {"model": model.name, "parameters": int(model.count_params()), "embedding_size": int(model.output_shape[-1])}
    if args.weights.suffix.lower() == ".onnx":
        report["max_abs_difference"] = onnx_difference(model, args.weights, args.check_batch)
        print(f"onnxruntime vs keras: max |Δ| of normalised embeddings {report['max_abs_difference']:.2e}")
        if report["max_abs_difference"] > TOLERANCE:
            sys.exit(f"error: {args.weights}: the imported model differs from onnxruntime by "
                     f"{report['max_abs_difference']:.2e} > {TOLERANCE}; nothing written")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.stem}.tmp.keras")  # Keras wants the suffix; renamed when complete
    model.save(tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {model.name}, {report['parameters']:,} parameters, "
          f"{report['embedding_size']}-d embedding")
    return report


if __name__ == "__main__":
    main()
