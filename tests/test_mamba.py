"""The plain-PyTorch Mamba: the reference formula, recurrent = full sequence, mamba_ssm's layout."""

import pytest
import torch

from aem_bench.policies.mamba import Mamba, cuda_kernels_available, selective_scan


def closed_form_scan(u, delta, A, B, C, D, z):
    """y_t = sum_{s<=t} C_t . (prod_{r=s+1..t} exp(delta_r A)) delta_s B_s u_s + D u_t, then the
    silu(z) gate: the SSM unrolled, with no recurrence in the code."""
    length = u.shape[-1]
    log_decay = delta[..., None] * A[None, :, None, :]  # (b, d, L, n)
    cumulative = log_decay.cumsum(dim=2)
    y = torch.zeros_like(u)
    for t in range(length):
        for s in range(t + 1):
            decay = torch.exp(cumulative[:, :, t] - cumulative[:, :, s])  # steps s+1 .. t
            contribution = decay * (delta[:, :, s] * u[:, :, s])[..., None] * B[:, None, :, s]
            y[:, :, t] += (contribution * C[:, None, :, t]).sum(-1)
    return (y + D[None, :, None] * u) * torch.nn.functional.silu(z)


def test_selective_scan_matches_the_unrolled_formula():
    g = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 6, 4, 7
    u, z = torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, d, length, generator=g))
    A = -torch.rand(d, n, generator=g) * 2
    B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
    D = torch.randn(d, generator=g)
    y, _ = selective_scan(u, delta, A, B, C, D, z)
    torch.testing.assert_close(y, closed_form_scan(u, delta, A, B, C, D, z), rtol=1e-5, atol=1e-5)


def test_stepping_one_token_at_a_time_equals_the_full_sequence():
    torch.manual_seed(0)
    mamba = Mamba(d_model=16, d_state=8).eval()
    x = torch.randn(3, 12, 16)
    full = mamba(x)
    state = mamba.initial_state(3)
    steps = []
    for t in range(12):
        y, state = mamba.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)

    # A prefix run in one go, then a step, then the rest in one go, each from the last state.
    _, state = mamba.forward_with_state(x[:, :5])
    y, state = mamba.step(x[:, 5], state)
    torch.testing.assert_close(y, full[:, 5], rtol=1e-5, atol=1e-5)
    rest, _ = mamba.forward_with_state(x[:, 6:], state)
    torch.testing.assert_close(rest, full[:, 6:], rtol=1e-5, atol=1e-5)


def test_parameters_have_mamba_ssm_names_and_shapes():
    # mamba_ssm.Mamba(d_model=16) (d_state 16, d_conv 4, expand 2, dt_rank ceil(16/16) = 1):
    expected = {
        "A_log": (32, 16), "D": (32,), "in_proj.weight": (64, 16),
        "conv1d.weight": (32, 1, 4), "conv1d.bias": (32,), "x_proj.weight": (33, 32),
        "dt_proj.weight": (32, 1), "dt_proj.bias": (32,), "out_proj.weight": (16, 32),
    }
    got = {name: tuple(p.shape) for name, p in Mamba(d_model=16).state_dict().items()}
    assert got == expected


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU: torch.cuda.is_available() is False")
@pytest.mark.skipif(not cuda_kernels_available("cuda"),
                    reason="needs mamba_ssm, which no default install has: "
                           "pip install -e '.[gpu]' on a machine with CUDA")
def test_same_outputs_as_mamba_ssm_on_gpu():
    from mamba_ssm import Mamba as CudaMamba

    torch.manual_seed(0)
    reference = CudaMamba(d_model=32).cuda().eval()
    ours = Mamba(d_model=32).cuda().eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 40, 32, device="cuda")
    expected = reference(x)
    torch.testing.assert_close(ours(x), expected, rtol=1e-3, atol=1e-3)  # through the kernel
    _, state = ours.forward_with_state(x[:, :1])  # then the PyTorch scan from a carried state
    rest, _ = ours.forward_with_state(x[:, 1:], state)
    torch.testing.assert_close(rest, expected[:, 1:], rtol=1e-3, atol=1e-3)
