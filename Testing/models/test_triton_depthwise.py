"""The Triton depthwise conv equals F.conv3d (outputs and input / weight / bias gradients), on the CPU in
Triton's interpreter and, where there is a GPU, compiled against cuDNN; the package works without Triton.

Why a worker process: ``TRITON_INTERPRET=1`` takes effect when ``@triton.jit`` wraps a kernel and
then holds for every kernel defined later in that process, so setting it in the pytest process would
leak into other tests (and into the compiled kernels of the CUDA test). The interpreter checks run
in one 'spawn' worker (:mod:`triton_interpreted`, whose initializer sets the variable before
anything imports Triton), started once for this module; an assertion failing there fails the test here.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import triton_interpreted as checks
from lkseg.models import depthwise

pytest.importorskip("triton", reason="the dev extra installs triton; CUDA builds of torch ship it")
HALF_TOLERANCE = checks.TOLERANCE


@pytest.fixture(scope="module")
def interpreter():
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=checks.enter_interpreter) as pool:
        yield lambda fn, *args, **kwargs: pool.submit(fn, *args, **kwargs).result(timeout=300)


@pytest.mark.parametrize(("shape", "k", "config"), [
    ((2, 3, 19, 9, 21), 3, None),  # 2 depth blocks, 3 x 2 (H, W) tiles; 3 channels in blocks of 2
    ((2, 5, 7, 9, 11), 5, {"BC": 3}),  # 5 channels in blocks of 3
    ((2, 4, 9, 7, 5), 7, {"BD": 16, "BH": 8, "BW": 16, "BC": 1}),
    ((2, 2, 11, 5, 13), 9, {"BD": 32, "BH": 4, "BW": 16, "BC": 4}),  # a band of 64 slices; one partial channel block
])
def test_fp32_output_and_gradients_equal_conv3d(interpreter, shape, k, config) -> None:
    errors = interpreter(checks.conv_and_gradients, shape, k, torch.float32, config, seed=k)
    assert set(errors) == {"output", "input", "weight", "bias"}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_accumulate_in_fp32(interpreter, dtype) -> None:
    """Within one rounding of the result to the input's precision (2x margin): HALF_TOLERANCE."""
    interpreter(checks.conv_and_gradients, (2, 3, 7, 9, 5), 5, dtype, seed=11)


def test_every_autotuning_config_computes_the_same_conv_and_weight_gradient(interpreter) -> None:
    assert interpreter(checks.every_config, (1, 3, 5, 6, 7), 3) >= 4


def test_fused_batchnorm_gelu_equals_batchnorm_eval_then_gelu(interpreter) -> None:
    interpreter(checks.fused_bn_gelu, (2, 3, 7, 9, 6), 7)


def test_repux_block_takes_the_fused_kernel_in_eval_and_the_differentiable_one_in_training(interpreter) -> None:
    results = interpreter(checks.repux_block_on_the_triton_path)
    assert set(results) == {"train", "eval"}


def test_auto_never_takes_triton_on_the_cpu_and_forcing_it_there_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(depthwise, "_chosen", {})
    x = torch.randn(1, 2, 12, 12, 12, requires_grad=True)
    for k in (7, 13):
        w = torch.randn(2, 1, k, k, k, requires_grad=True)
        depthwise.depthwise_conv3d(x, w, None, path="auto").sum().backward()
        with torch.no_grad():
            depthwise.depthwise_conv3d(x, w, None, path="auto")
    assert depthwise.chosen_paths() and set(depthwise.chosen_paths().values()) <= {"direct", "fft"}
    assert depthwise.triton_path() is not None and not depthwise.triton_path().INTERPRETED
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        depthwise.depthwise_conv3d(x, w, None, path="triton")


def test_without_triton_the_package_works_and_forcing_triton_says_what_is_missing() -> None:
    code = """
import sys
sys.modules["triton"] = None  # `import triton` now raises ImportError, as where it is not installed
import torch, torch.nn.functional as F
from lkseg.models import build_model, depthwise, get_spec
assert depthwise.triton_path() is None
x, w = torch.randn(1, 2, 9, 9, 9), torch.randn(2, 1, 5, 5, 5)
assert torch.allclose(depthwise.depthwise_conv3d(x, w), F.conv3d(x, w, padding=2, groups=2), atol=1e-5)
net = build_model("repuxnet", in_channels=1, out_channels=2, **get_spec("repuxnet").small_config).eval()
with torch.no_grad():
    assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
try:
    depthwise.depthwise_conv3d(x, w, path="triton")
except RuntimeError as error:
    print(error)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(depthwise.__file__).parents[2]),
                                                                    os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LKSEG_DWCONV=triton needs the triton package" in proc.stdout


def _resources_script():
    path = Path(__file__).resolve().parents[2] / "scripts" / "triton_dwconv_resources.py"
    spec = importlib.util.spec_from_file_location("triton_dwconv_resources", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("k", "dtype", "shape"), [(21, "bf16", (32, 4, 16)), (7, "fp32", (16, 4, 16))])
def test_kernels_compile_for_hopper_on_tensor_cores_without_spilling(k, dtype, shape) -> None:
    """Ahead-of-time compilation for sm_90 (no GPU needed): one config of each kernel per case fits
    in registers (no stack) and multiplies on tensor cores (HMMA in the SASS)."""
    from lkseg.models import triton_kernels

    script = _resources_script()
    for kind, configs in (("conv", triton_kernels.conv_configs()), ("wgrad", triton_kernels.weight_grad_configs())):
        config, = [c for c in configs if (c.kwargs["BD"], c.kwargs["BH"], c.kwargs["BW"]) == shape
                   and c.kwargs.get("BC", 1) == 1]
        used = script.resources(script.compile_kernel(kind, config, k, dtype, arch=90))
        assert used["stack"] == 0 and used["HMMA"] + used["HGMMA"] > 0, (kind, used)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k", [7, 21])
def test_compiled_kernels_equal_cudnn_on_a_uxnet_sized_input(k, dtype) -> None:
    """[2, 48, 48^3] as in UX-Net's first stage: forward and the three gradients against cuDNN in fp32
    without TF32, then ``auto`` (forward + backward timed) keeps one of the three paths."""
    from lkseg.models import triton_depthwise as td

    assert not td.INTERPRETED
    torch.manual_seed(k)
    dev = torch.device("cuda")
    x = torch.randn(2, 48, 48, 48, 48, device=dev).to(dtype)
    w = (torch.randn(48, 1, k, k, k, device=dev) / k ** 1.5).to(dtype)
    b = torch.randn(48, device=dev).to(dtype)
    probe = torch.randn_like(x)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    out = td.depthwise_conv3d(*leaves)
    grads = torch.autograd.grad((out.float() * probe).sum(), leaves)
    ref_leaves = [t.float().requires_grad_() for t in (x, w, b)]
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        ref = F.conv3d(*ref_leaves, padding=k // 2, groups=48)
        ref_grads = torch.autograd.grad((ref * probe).sum(), ref_leaves)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    tolerance = 1e-4 if dtype == torch.float32 else HALF_TOLERANCE[dtype]
    for name, got, want in zip(("output", "input", "weight", "bias"), (out, *grads), (ref, *ref_grads)):
        err = ((got.float() - want).abs().max() / want.abs().max()).item()
        assert err <= tolerance, (name, err)
    depthwise._chosen.clear()
    depthwise.depthwise_conv3d(*leaves).sum().backward()
    assert set(depthwise.chosen_paths().values()) <= {"direct", "fft", "triton"}
    assert len(depthwise.chosen_paths()) == 1
