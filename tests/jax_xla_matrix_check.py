"""The JAX cells of the XLA and precision matrix (tests/xla_matrix.py), all in this one process.

    KERAS_BACKEND=jax python tests/jax_xla_matrix_check.py REFERENCES.pkl RESULTS.pkl

REFERENCES holds TensorFlow's non-XLA runs by (backbone, precision); for each, the same model is built
here, given the reference's starting state, and stepped compiled (JAX always compiles a Keras step with
XLA); RESULTS gets `xla_matrix.compiled`'s record, or the error, for each. Exits 1 if one failed.
TensorFlow stays out of this process, as a plain install (`pip install .`) has none.
"""
import os
import pickle
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
# A correctness check: XLA's CPU backend optimisation would cost more compile time than it saves here.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

sys.modules["tensorflow"] = None  # the JAX backend alone, as a plain install has no TensorFlow
import keras  # noqa: E402

import xla_matrix  # noqa: E402


def main(references, results):
    assert keras.backend.backend() == "jax", keras.backend.backend()
    with open(references, "rb") as f:
        cells = pickle.load(f)
    out, failed = {}, False
    for (backbone, precision), ref in cells.items():
        began = time.process_time()
        try:
            out[backbone, precision] = xla_matrix.compiled(backbone, precision, ref)
        except Exception as exc:  # one cell's failure is reported with the others'
            out[backbone, precision] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            failed = True
        print(f"{backbone} {precision}: {out[backbone, precision].get('error', 'ok')} "
              f"({time.process_time() - began:.1f} s CPU)", flush=True)
    with open(results, "wb") as f:
        pickle.dump(out, f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
