"""Face cropping throughput (detect + align + write) in images/s, with 1 and 2 worker processes,
and the time and peak memory of one large photo.

    python bench/bench_preprocess.py [--images 40] [--workers 1 2] [--large 8000] [--quick] [--json rows.json]

The input is scikit-image's astronaut photo (512x512) and a 1024x1024 upscale of it, replicated
into a temporary identity-folder tree. With one worker the detector is built before timing; pool
runs include starting the workers (each imports TensorFlow and builds its own detector). The large
photo is the astronaut upscaled to --large pixels a side, a JPEG cropped from its bytes (detected on
a copy of at most faces/photo.MAX_DETECT_SIDE pixels, --max-side) in a process of its own; its peak
memory is the growth of that process's peak resident set while it is cropped, after the detector is built.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
from skimage import data  # noqa: E402

from arcface_keras.faces import detect, photo  # noqa: E402
from arcface_keras.faces.preprocess import CropOptions, crop_photo, jpeg_bytes, preprocess  # noqa: E402
from arcface_keras.io import write_json  # noqa: E402


def make_tree(root, n_images):
    """n_images JPEGs in 4 identity folders, half 512 px and half 1024 px."""
    small = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    large = cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    for i in range(n_images):
        folder = pathlib.Path(root) / f"person{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), small if i % 2 else large, [cv2.IMWRITE_JPEG_QUALITY, 95])


def large_photo_row(side, max_side, tmp):
    """Crop one side x side JPEG of the astronaut in a fresh process: seconds and the peak memory it added."""
    path = pathlib.Path(tmp) / "large.jpg"
    path.write_bytes(jpeg_bytes(cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)))
    done = subprocess.run([sys.executable, __file__, "--measure", str(path), "--max-side", str(max_side)],
                          capture_output=True, text=True, check=True)
    seconds, added, found = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"one {side}x{side} JPEG, detected at most {max_side} px a side: {seconds:.1f} s, "
          f"peak memory +{added:.2f} GiB, {found}")
    return {"photos": f"one {side}x{side} JPEG", "workers": 1, "crops": int(found == "a face"),
            "seconds": seconds, "images_per_s": 1 / seconds, "peak_gib_added": added}


def peak_kib():
    """This process's peak resident memory: VmHWM (ru_maxrss would carry the parent's peak across exec)."""
    status = pathlib.Path("/proc/self/status")
    if status.is_file():
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(path, max_side):
    """In this process: build the detector, then crop the photo at `path`; prints [seconds, GiB added, outcome]."""
    detect.detect(data.astronaut())
    encoded = pathlib.Path(path).read_bytes()
    before = peak_kib()
    began = time.perf_counter()
    crop = crop_photo(encoded, CropOptions(max_side=max_side))
    seconds = time.perf_counter() - began
    added = (peak_kib() - before) / 2**20
    print(json.dumps([seconds, added, "a face" if crop.reason == "" else crop.reason]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--large", type=int, default=8000, help="side of the large photo (0: none)")
    parser.add_argument("--max-side", type=int, default=photo.MAX_DETECT_SIDE, help="detection copy's longest side")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 images, 1 worker, a 2048-pixel photo")
    parser.add_argument("--measure", metavar="JPEG", help=argparse.SUPPRESS)  # the large photo's own process
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (bench/run_all.py reads it)")
    args = parser.parse_args(argv)
    if args.measure:
        return measure(args.measure, args.max_side)
    if args.quick:
        args.images, args.workers, args.large = 8, [1], min(args.large, 2048)
    title = f"Face cropping (MTCNN detect + align + write): {args.images} images (half 512x512, half 1024x1024)"
    print(f"{title}, {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_tree(pathlib.Path(tmp) / "raw", args.images)
        detect.detect(data.astronaut())  # build the in-process detector outside the timings
        if args.large:
            rows.append(large_photo_row(args.large, args.max_side, tmp))
        for workers in args.workers:
            began = time.perf_counter()
            out = pathlib.Path(tmp) / f"out{workers}"
            report = preprocess(pathlib.Path(tmp) / "raw", out, CropOptions(), workers, progress=False)
            seconds = time.perf_counter() - began
            written = report["written"]
            print(f"workers={workers}: {written} crops in {seconds:.1f} s = {written / seconds:.2f} images/s")
            rows.append({"photos": f"{args.images} (512 and 1024 px)", "workers": workers, "crops": written,
                         "seconds": seconds, "images_per_s": written / seconds})
    if args.json:
        columns = ["photos", "workers", "crops", "seconds", "images_per_s", "peak_gib_added"]
        write_json(args.json, {"title": title, "columns": columns, "rows": rows})


if __name__ == "__main__":
    main()
