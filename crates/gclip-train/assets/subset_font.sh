#!/bin/sh
# Regenerates DejaVuSans-subset.ttf: DejaVu Sans (Debian package fonts-dejavu-core) cut to
# printable ASCII plus a few symbols, so curves.png never depends on a system font.
# Needs fontTools (`pip install fonttools`).
set -e
SRC=${1:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}
pyftsubset "$SRC" \
  --unicodes="U+0020-007E,U+00B0,U+00B7,U+00D7,U+2013,U+2212,U+00B5" \
  --layout-features='kern' --no-hinting \
  --output-file="$(dirname "$0")/DejaVuSans-subset.ttf"
