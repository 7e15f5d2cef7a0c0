"""Identity folders: `<root>/<identity>/<image>`, one folder per person (CASIA, MS1M exports, our crops)."""
from pathlib import Path

# Every format OpenCV's imread documents; a file that does not decode is skipped and reported where it is read.
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".avif", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".pbm", ".pgm", ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".exr", ".hdr", ".pic",
})


def is_image_file(path):
    """Whether `path` is a file with one of the IMAGE_SUFFIXES (any case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_identity_folder(root):
    """Return (paths, labels, class_names, empty): images under each identity folder, labels by sorted
    name; identity folders holding no image file are listed in `empty` and get no label."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of identity folders")
    paths, labels, class_names, empty = [], [], [], []
    for name in sorted(p.name for p in root.iterdir() if p.is_dir()):
        images = [str(image) for image in sorted((root / name).rglob("*")) if is_image_file(image)]
        if not images:
            empty.append(name)
            continue
        paths += images
        labels += [len(class_names)] * len(images)
        class_names.append(name)
    if not paths:
        raise ValueError(f"{root}: no images found in identity folders (expected {root}/<identity>/<image>.jpg)")
    return paths, labels, class_names, empty
