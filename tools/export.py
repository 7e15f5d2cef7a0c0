"""Export an embedder to SavedModel, TFLite (float32 or dynamic-range int8) or ONNX, checked against Keras.

The export is run on random images next to the Keras model and the largest difference of the
L2-normalised embeddings is printed; float formats must agree within 1e-4 or nothing is written.
"""
import argparse
import pathlib
import shutil
import sys
import tempfile
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from arcface_keras.evaluation.verification import l2_normalize  # noqa: E402
from arcface_keras.io import atomic_path  # noqa: E402

FORMATS = ("savedmodel", "tflite", "tflite-int8", "onnx")
FLOAT_TOLERANCE = 1e-4


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, required=True, help=".keras embedder")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="SavedModel directory, .tflite or .onnx file")
    parser.add_argument("--check-batch", type=int, default=4, help="random images used for the parity check")
    return parser.parse_args(argv)


def load_embedder(path):
    import keras

    import arcface_keras.heads  # noqa: F401

    return keras.saving.load_model(path, compile=False)


def input_shape(model):
    """(H, W, 3) of the embedder's input; 112×112 where it is not fixed."""
    height, width, channels = model.input_shape[1:]
    return (height or 112, width or 112, channels)


def export_savedmodel(model, directory):
    model.export(str(directory), format="tf_saved_model", verbose=False)


def run_savedmodel(directory, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))  # keep it alive while its function runs
    return loaded.serve(images).numpy()


def export_tflite(model, path, int8=False):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        export_savedmodel(model, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights, float activations
        pathlib.Path(path).write_bytes(converter.convert())


def run_tflite(path, images):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice pointing to ai_edge_litert
        interpreter = tf.lite.Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(target["index"])


def export_onnx(model, path):
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, *input_shape(model)), tf.float32, name="images")]
    function = tf.function(lambda images: model(images, training=False))
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=17)
    pathlib.Path(path).write_bytes(proto.SerializeToString())


def run_onnx(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def missing_onnx_package():
    import importlib.util

    return next((name for name in ("tf2onnx", "onnxruntime") if importlib.util.find_spec(name) is None), None)


def export(model, fmt, tmp):
    """Write the export to `tmp` and return its embeddings-runner."""
    if fmt == "savedmodel":
        export_savedmodel(model, tmp)
        return run_savedmodel
    if fmt in ("tflite", "tflite-int8"):
        export_tflite(model, tmp, int8=fmt == "tflite-int8")
        return run_tflite
    export_onnx(model, tmp)
    return run_onnx


def max_difference(model, runner, path, batch):
    """Largest |difference| between the L2-normalised embeddings of Keras and of the export."""
    images = np.random.default_rng(0).uniform(-1, 1, (batch, *input_shape(model))).astype(np.float32)
    expected = l2_normalize(model.predict_on_batch(images))
    return float(np.abs(l2_normalize(runner(path, images)) - expected).max())


def check(args, difference):
    if args.format != "tflite-int8" and not difference <= FLOAT_TOLERANCE:
        sys.exit(f"error: {args.format} export differs from the Keras model by {difference:.2e} > {FLOAT_TOLERANCE:g}; not written")



def main(argv=None):
    args = parse_args(argv)
    if args.format == "onnx" and missing_onnx_package():
        sys.exit(f"error: --format onnx needs the {missing_onnx_package()} package (pip install tf2onnx onnxruntime)")
    try:
        model = load_embedder(args.model)
    except (OSError, ValueError, TypeError) as exc:
        sys.exit(f"error: {args.model}: cannot load the embedder ({exc})")
    if args.format == "savedmodel":  # a directory: build it beside the target, then swap it in
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            difference = max_difference(model, export(model, args.format, tmp), tmp, args.check_batch)
            check(args, difference)
            shutil.rmtree(args.out, ignore_errors=True)
            tmp.rename(args.out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        with atomic_path(args.out) as tmp:
            difference = max_difference(model, export(model, args.format, tmp), tmp, args.check_batch)
            check(args, difference)
    print(f"wrote {args.out} ({args.format}): max |difference| of normalised embeddings vs Keras = {difference:.2e}")
    return difference


if __name__ == "__main__":
    main()
