#!/usr/bin/env python
"""Compile every autotuning config of the Triton depthwise kernels for a GPU architecture (default
sm_90: H100 / H200) on this machine, GPU or not, and print what the compiler gives each: registers per
thread, stack bytes (register spills), shared memory, and the counts of tensor-core (HMMA: mma.sync,
HGMMA: wgmma), global-load (LDG: through registers, LDGSTS: cp.async into shared memory) and
local-memory (LDL/STL: spill traffic) instructions in the SASS.

The checks that need no GPU before timing on one: that the kernels compile for the chip, and which
configs spill. Uses the ptxas and cuobjdump that Triton's wheel carries, and Triton's ahead-of-time
``triton.compile(ASTSource(...), target=...)``.

    python scripts/triton_dwconv_resources.py [--arch 90] [--kernels 7 21] [--dtypes bf16 fp32]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from lkseg.models import triton_kernels as tk

TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def compile_kernel(kind: str, config: triton.Config, k: int, dtype: str, arch: int = 90):
    """The compiled ``conv`` or ``wgrad`` kernel for one config, kernel size and dtype ('bf16', 'fp16', 'fp32')."""
    prec = {"PREC": "tf32x3" if dtype == "fp32" else "tf32", "UPCAST": False}
    tile = {"BD": config.kwargs["BD"], "BH": config.kwargs["BH"], "BW": config.kwargs["BW"],
            "KS": tk.band_rows(config.kwargs["BD"], k)}
    if kind == "conv":
        fn = tk.conv_kernel
        types = {"x_ptr": f"*{dtype}", "w_ptr": f"*{dtype}", "b_ptr": "*fp32", "y_ptr": f"*{dtype}"}
        constants = {"K": k, "HAS_BIAS": True, "GELU": False, **prec, "BC": config.kwargs["BC"], **tile}
    else:
        fn = tk.weight_grad_kernel
        types = {"x_ptr": f"*{dtype}", "g_ptr": f"*{dtype}", "part_ptr": "*fp32"}
        constants = {"K": k, **prec, **tile, "KP": triton.next_power_of_2(k)}
    signature = {name: types.get(name, "constexpr" if name in constants else "i32") for name in fn.arg_names}
    source = ASTSource(fn=fn, signature=signature,
                       constexprs={(fn.arg_names.index(name),): value for name, value in constants.items()})
    return triton.compile(source, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": config.num_warps, "num_stages": config.num_stages})


def resources(compiled) -> dict[str, int]:
    """Registers, stack bytes, shared memory and instruction counts of a compiled kernel."""
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([TOOLS / "cuobjdump", "--dump-resource-usage", cubin], capture_output=True,
                               text=True, check=True).stdout
        sass = subprocess.run([TOOLS / "cuobjdump", "--dump-sass", cubin], capture_output=True, text=True,
                              check=True).stdout
    out = {"registers": int(re.search(r"REG:(\d+)", usage).group(1)),
           "stack": int(re.search(r"STACK:(\d+)", usage).group(1)), "shared": compiled.metadata.shared}
    out.update({op: len(re.findall(rf"\b{op}\b", sass)) for op in ("HGMMA", "HMMA", "LDG", "LDGSTS", "LDL", "STL")})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: Hopper)")
    p.add_argument("--kernels", type=int, nargs="+", default=[7, 21])
    p.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    args = p.parse_args()
    print(f"sm_{args.arch}; stack > 0 means spills. kernel, k, dtype, config (BD BH BW [BC] warps stages): resources")
    for k in args.kernels:
        for dtype in args.dtypes:
            for kind, configs in (("conv", tk.conv_configs()), ("wgrad", tk.weight_grad_configs())):
                for config in configs:
                    shape = " ".join(str(v) for v in config.kwargs.values())
                    r = resources(compile_kernel(kind, config, k, dtype, args.arch))
                    print(f"{kind:>5} {k:>2} {dtype} ({shape} w{config.num_warps} s{config.num_stages}): "
                          + " ".join(f"{name} {value}" for name, value in r.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
