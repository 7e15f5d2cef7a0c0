"""Import an arcface_torch IResNet-18/34/50/100 or MobileFaceNet (.pth state dict or .onnx file) as a
.keras backbone.

    python tools/import_weights.py ms1mv3_r50/backbone.pth --out pretrained/ms1mv3_r50.keras
    python tools/import_weights.py glint360k_r100.onnx --out pretrained/glint360k_r100.keras --depth 100
    python tools/import_weights.py buffalo_s/w600k_mbf.onnx --out pretrained/w600k_mbf.keras

The architecture is read from the file (--architecture forces it); depth or blocks, width, output
and embedding size are read from the weights (--depth/--width/--embedding-size make a mismatch an
error). The .pth is read without running any of its code. An ONNX source is checked against
onnxruntime on random images (largest difference of the normalised embeddings, with and without
flip, must be under 1e-4, or nothing is written). The tool prints the backbone spec to fine-tune the
result with `--set model.pretrained=OUT`, e.g. {"type": "resnet50", "padding": "symmetric"}.
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
from arcface_keras.pretrained.weights import ARCHITECTURES  # noqa: E402

# Float32 through 50-100 layers, two implementations summing in different orders: a few 1e-7 on
# unit vectors (w600k_mbf: 4e-7); 1e-4 is far below what a wrong layer gives (> 1e-2).
TOLERANCE = 1e-4


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=pathlib.Path, help="arcface_torch backbone.pth (state dict) or .onnx file")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="the .keras backbone to write")
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), help="the network (default: read from the file)")
    parser.add_argument("--depth", type=int, choices=(18, 34, 50, 100),
                        help="fail unless the IResNet weights have this depth")
    parser.add_argument("--width", type=float, help="fail unless the weights have this width (1.0: 64..512 channels)")
    parser.add_argument("--embedding-size", type=int, help="fail unless the weights have this embedding size")
    parser.add_argument("--input-size", type=int, default=112, help="square input size (a flattening fc needs 112)")
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
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # exports that declare batch 1 run any batch, with a warning per run
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
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
    from arcface_keras.pretrained.weights import import_backbone

    expected = {"depth": args.depth, "width": args.width, "embedding_size": args.embedding_size}
    try:
        model, spec = import_backbone(args.weights, args.architecture, (args.input_size, args.input_size), **expected)
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    report = {"model": model.name, "backbone": spec, "parameters": int(model.count_params()),
              "embedding_size": int(model.output_shape[-1])}
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
          f"{report['embedding_size']}-d embedding\nfine-tune it with: --set \"model.backbone={spec}\" "
          f"--set model.embedding_size={report['embedding_size']} --set model.pretrained={args.out}")
    return report


if __name__ == "__main__":
    main()
