#!/usr/bin/env bash
# One prepared run on a CUDA machine for issue 15: the GPU tests and the GPU benchmarks in one call, within
# 8 minutes, each step under its own time limit, every log also written to $OUT (the device tool returns it).
#
#   here:            bash scripts/gpu_pack.sh          (MONAI, SimpleITK, nibabel -> .gpu/site.tar.xz)
#   device tool:     run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#
# Installs nothing: the device image's torch and Triton are used as they are, the packed packages are
# unpacked into /tmp and put on PYTHONPATH. Prints, step by step:
#   tests    the CUDA tests (Triton depthwise and deformable kernels against cuDNN / grid_sample, CUDA vs
#            CPU segmentation, loading onto the GPU)
#   dwconv   depthwise 7^3 and 21^3 on [4, 48, 48^3]: direct (cuDNN), FFT, Triton; fwd and fwd+bwd
#            (targets: 7^3 >= 10x cuDNN, 21^3 >= 20x)
#   deform   the fused deformable kernel against the grid_sample path (target >= 5x)
#   uxnet240 paper-size 3D UX-Net on a 240x240x200 volume: ours vs the MONAI reference in fp32 and under
#            fp16 autocast (targets: model time >= 8x the fp32 reference, >= 5x the fp16 one)
#   uxnet512 the same network on a 512x512x300 CT, file to labels (target < 1 s)
#   compile  torch.compile and CUDA graphs for UX-Net's fixed 96^3 window batch: do they pay?
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
site=/tmp/lkseg-site
if [ -f .gpu/site.tar.xz ]; then
    mkdir -p "$site" && tar -C "$site" -xJf .gpu/site.tar.xz
else
    echo "no .gpu/site.tar.xz: run scripts/gpu_pack.sh here first (MONAI, SimpleITK and nibabel are needed)"
fi
export PYTHONPATH="$PWD/LargeKernelSeg:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
py=python3

step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit} s)"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    cat "$out/$name.log"
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
}

step env 30 $py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
step tests 90 $py -m pytest -q -p no:cacheprovider -o addopts="" -k "cuda or cudnn" \
    Testing/models/test_triton_depthwise.py Testing/models/test_triton_deform.py \
    Testing/inference/test_inference.py Testing/checkpoint/test_checkpoint.py
step dwconv 75 $py scripts/benchmark_dwconv.py
step deform 45 $py scripts/benchmark_deform.py
step uxnet240 100 $py scripts/benchmark_inference.py --network uxnet --ct-size 240 240 200 \
    --ct-spacing 1.5 1.5 1.5 --spacing 1.5 --device cuda --reference-amp --json "$out/uxnet240.json"
step uxnet512 50 $py scripts/benchmark_inference.py --network uxnet --large-ct --spacing 1.5 --device cuda \
    --no-fp32 --json "$out/uxnet512.json"
step compile 100 $py scripts/benchmark_compile.py --network uxnet --device cuda --repeat 5
