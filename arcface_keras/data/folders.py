"""Identity folders: `<root>/<identity>/<image>`, one folder per person (CASIA, MS1M exports, our crops)."""
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def list_identity_folder(root):
    """Return (paths, labels, class_names): images under each identity folder, labels by sorted name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of identity folders")
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(class_names):
        for image in sorted((root / name).rglob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file():
                paths.append(str(image))
                labels.append(label)
    if not paths:
        raise ValueError(f"{root}: no images found in identity folders (expected {root}/<identity>/<image>.jpg)")
    return paths, labels, class_names
