#!/usr/bin/env bash
# Pack, here (where PyPI is reachable), the Python packages the GPU check needs and the device machine's
# image lacks (it has torch, triton, numpy, scipy, psutil, safetensors, einops, matplotlib, tqdm, pytest,
# pytest-timeout; not MONAI, SimpleITK or nibabel) into .gpu/site.tar.xz, ignored by git, for the device
# tool to carry (carry=[".gpu"]). Installed from wheels that run on the device's Python 3.12 (pure Python,
# and SimpleITK's abi3 build); xz because SimpleITK's wheel alone (52 MB) and the repository would pass
# the 64 MiB a call may carry. scripts/gpu_check.sh unpacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$work/wheels" monai==1.6.1 SimpleITK==2.5.3 nibabel==5.4.2
python3 -m pip install -q --no-deps --no-compile --target "$work/site" "$work"/wheels/*.whl
mkdir -p .gpu
tar -C "$work/site" -cJf .gpu/site.tar.xz .
ls -la .gpu/site.tar.xz
