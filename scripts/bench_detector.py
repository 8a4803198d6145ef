"""Detector benchmark: exact scene recovery on random renders with blur and noise.

    python scripts/bench_detector.py [--n 2000]

Prints the headline figure (random blur sigma <= 1 px and noise std <= 0.06 at 64 px:
the kind of degradation a small generative model produces), the degradation curves
as noise and blur grow, the figure at other canvas sizes, and at smaller object sizes.
"""

import argparse
import time

from sketchloop.evaluation.detector_check import check_detector

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=2000)
parser.add_argument("--curve-n", type=int, default=300)
args = parser.parse_args()

t = time.time()
head = check_detector(args.n, seed=0)
print(
    f"headline: {head.recovered}/{head.n} = {head.accuracy:.4f} scenes recovered exactly "
    f"(64 px, blur U(0,1) px, noise U(0,0.06)); {1000 * (time.time() - t) / args.n:.1f} ms/image"
)
print("\nnoise curve (blur fixed at 0.5 px, noise fixed):")
for noise in (0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3):
    r = check_detector(args.curve_n, seed=1, max_blur=0.5, max_noise=noise, fixed=True)
    print(f"  noise std {noise:.2f}: {r.accuracy:.3f}")
print("\nblur curve (noise fixed at 0.03, blur fixed):")
for blur in (0.0, 0.5, 1.0, 1.5, 2.0):
    r = check_detector(args.curve_n, seed=2, max_blur=blur, max_noise=0.03, fixed=True)
    print(f"  blur sigma {blur:.1f} px: {r.accuracy:.3f}")
print("\ncanvas size (headline degradation, blur scaled with the canvas):")
for size in (32, 48, 64, 96):
    r = check_detector(args.curve_n, seed=3, max_blur=size / 64, size=size)
    clean = check_detector(args.curve_n, seed=3, max_blur=0.0, max_noise=0.0, size=size)
    print(f"  {size:3d} px: clean {clean.accuracy:.3f}, degraded {r.accuracy:.3f}")
print("\nobject size (every object drawn at this side where it was placed, 64 px; clean and headline degradation):")
for object_size in (0.094, 0.125, 0.156, 0.1875, 0.25):
    clean = check_detector(args.curve_n, seed=5, max_blur=0.0, max_noise=0.0, object_size=object_size)
    degraded = check_detector(args.curve_n, seed=5, object_size=object_size)
    print(
        f"  {object_size:.3f} ({object_size * 64:.0f} px): clean {clean.accuracy:.3f}, degraded {degraded.accuracy:.3f}"
    )
