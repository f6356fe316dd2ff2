"""Build corruptions/assets/frost*.{png,jpg} from imagecorruptions' frost textures (run once).

The five textures Hendrycks' scripts draw from (frost1..frost5; Apache-2.0, github.com/hendrycks/
robustness). `frost{i}_x0.2.png`: cv2.resize(fx=fy=0.2, INTER_LINEAR) exactly as make_cifar_c.py
does, lossless, so CIFAR-parameter frost is bit-faithful. `frost{i}.jpg`: the full-size texture
(make_imagenet_c.py crops it unscaled), re-encoded as JPEG quality 90 to keep the package small.
"""
import importlib.resources
from pathlib import Path

import cv2

OUT = Path(__file__).resolve().parents[1] / "corruptions" / "assets"
NAMES = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"]

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    src = importlib.resources.files("imagecorruptions") / "frost"
    for i, name in enumerate(NAMES, start=1):
        with importlib.resources.as_file(src / name) as path:
            bgr = cv2.imread(str(path))
        small = cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)
        cv2.imwrite(str(OUT / f"frost{i}_x0.2.png"), small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        cv2.imwrite(str(OUT / f"frost{i}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        print(name, bgr.shape, "->", small.shape)
