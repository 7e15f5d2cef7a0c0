"""Show what an augmentation pipeline does: a PNG grid, one row per image.

Columns: the original, each augmentation alone (applied with p = 1), then the whole pipeline with
its own probabilities. Logged to W&B as "augmentations" when a W&B run is active.

    python tools/preview_augment.py --images data/kface/aligned --augment '["flip", {"type": "color_jitter", "p": 1.0}]' --out grid.png
    python tools/preview_augment.py --images a.jpg b.jpg --experiment experiments/kface_arc_r50.py --out grid.png
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import json  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", nargs="+", required=True, metavar="DIR_OR_FILE",
                        help="image files, or folders searched recursively (sorted, the first --rows are used)")
    specs = parser.add_mutually_exclusive_group(required=True)
    specs.add_argument("--augment", help='JSON list of specs, e.g. \'["flip", {"type": "variety", "p": 1.0}]\'')
    specs.add_argument("--experiment", help="take the list from this experiment file's data.augment")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--rows", type=int, default=4, help="number of images (default 4)")
    parser.add_argument("--size", type=int, default=112, help="images are resized to size x size (default 112)")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    return parser.parse_args(argv)


def augment_specs(args):
    if args.experiment:
        from arcface_keras.config import load_experiment

        return load_experiment(args.experiment, check_paths=False).data.augment  # its augmentations only
    try:
        specs = json.loads(args.augment)
    except json.JSONDecodeError as error:
        raise SystemExit(f"preview_augment: --augment is not JSON ({error})") from None
    return specs if isinstance(specs, list) else [specs]


def load_images(inputs, rows, size):
    """RGB uint8 images (rows, size, size, 3) from files and folders."""
    import cv2
    import numpy as np

    from arcface_keras.data.folders import is_image_file
    from arcface_keras.data.integrity import UnreadableImage, read_bgr_file

    paths = []
    for item in map(pathlib.Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if is_image_file(p))
        elif item.is_file():
            paths.append(item)
        else:
            raise SystemExit(f"preview_augment: {item}: no such file or folder")
    images = []
    for path in paths:
        try:
            image = read_bgr_file(path)
        except (OSError, UnreadableImage):  # missing, cut short or undecodable: left out of the preview
            continue
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if len(images) == rows:
            break
    if not images:
        raise SystemExit(f"preview_augment: no readable images in {', '.join(inputs)}")
    return np.stack(images)


def main(argv=None):
    args = parse_args(argv)
    specs = augment_specs(args)
    from arcface_keras.augment_preview import columns, save_grid

    try:
        cols = columns(load_images(args.images, args.rows, args.size), specs, args.seed)
    except (KeyError, TypeError, ValueError) as error:
        raise SystemExit(f"preview_augment: {error.args[0] if error.args else error}") from None
    save_grid(cols, args.out)
    print(f"wrote {args.out}: {len(cols[0][1])} images x {len(cols)} columns ({', '.join(t for t, _ in cols)})")
    wandb = sys.modules.get("wandb")  # a run can only be active where wandb is already imported
    if wandb is not None and wandb.run is not None:
        wandb.log({"augmentations": wandb.Image(str(args.out))})
    return 0


if __name__ == "__main__":
    main()
