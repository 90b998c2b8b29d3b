"""PyTorch frontend: torch.export programs with BatchNorm after biased,
unbiased and depthwise convolutions, against eager PyTorch."""
import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sophon
from tvm_sophon.frontend import SophonFrontendError, from_exported_program

import frontend_models as fm

torch = pytest.importorskip("torch")  # PyTorch is optional: without it these tests skip
from conftest import host_ops


@pytest.fixture(scope="module")
def model_and_program():
    model = fm.torch_bn_cnn()
    example = torch.randn(1, 1, 8, 8)
    return model, torch.export.export(model, (example,))


def test_batch_norm_is_folded_into_every_conv(model_and_program):
    _, program = model_and_program
    raw = host_ops(from_exported_program(program, normalise=False))
    assert raw.count("relax.nn.batch_norm") == 3
    names = host_ops(from_exported_program(program))
    assert "relax.nn.batch_norm" not in names
    assert names.count("relax.nn.conv2d") == 3
    report = tvm_sophon.offload_report(tvm_sophon.partition_for_sophon(from_exported_program(program)))
    assert report.offloaded_mac_share == 1.0
    assert report.offloaded[:3] == ["sophon.conv2d_bias_clip", "sophon.conv2d_bias_relu", "sophon.conv2d_bias_relu"]
    assert "sophon.matmul_bias" in report.offloaded  # Linear's add(bias, x) turned around
    assert report.host_ops == [] and "sophon.reshape" in report.offloaded  # Flatten too, as a view


def test_chip_matches_eager_pytorch(model_and_program):
    model, program = model_and_program
    vm = relax.VirtualMachine(tvm_sophon.build(from_exported_program(program)), tvm.cpu())
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 3
    (out,) = vm["main"](tvm.runtime.tensor(x.numpy()))
    with torch.no_grad():
        ref = model(x).numpy()
    # batch norm folded into the weights reorders float32 roundings; outputs are O(1)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_not_an_exported_program():
    with pytest.raises(SophonFrontendError, match="expected a torch.export.ExportedProgram"):
        from_exported_program(fm.torch_bn_cnn())
