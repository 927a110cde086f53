"""The plain-PyTorch Mamba: the reference formula, recurrent = full sequence, mamba_ssm's layout."""

import pytest
import torch

from aem_bench.policies.mamba import (
    Mamba,
    cuda_kernels_available,
    selective_scan,
    selective_scan_reference,
)


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


@pytest.mark.parametrize("scan", [selective_scan, selective_scan_reference])
def test_selective_scan_matches_the_unrolled_formula(scan):
    g = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 6, 4, 7
    u, z = torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, d, length, generator=g))
    A = -torch.rand(d, n, generator=g) * 2
    B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
    D = torch.randn(d, generator=g)
    y, _ = scan(u, delta, A, B, C, D, z)
    torch.testing.assert_close(y, closed_form_scan(u, delta, A, B, C, D, z), rtol=1e-5, atol=1e-5)


def _scan_inputs(b=2, d=6, n=4, length=13, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)

    def leaf(*shape, transform=lambda t: t):
        return transform(torch.randn(*shape, generator=g, dtype=dtype)).requires_grad_()

    return (leaf(b, d, length), leaf(b, d, length, transform=torch.nn.functional.softplus),
            leaf(d, n, transform=lambda t: -t.abs() * 3), leaf(b, n, length), leaf(b, n, length),
            leaf(d), leaf(b, d, length), leaf(b, d, n))


def test_the_written_out_backward_is_the_gradient():
    """SelectiveScan's hand-written backward against numerical differences (gradcheck) and
    against autograd through the reference loop, for every input, the starting state included,
    with a loss on both the outputs and the last state."""
    inputs = _scan_inputs()
    assert torch.autograd.gradcheck(selective_scan, inputs)

    def loss(scan):
        y, h = scan(*inputs)
        return (y * torch.linspace(-1, 2, y.shape[-1], dtype=y.dtype)).sum() + (h ** 2).sum()

    ours = torch.autograd.grad(loss(selective_scan), inputs)
    reference = torch.autograd.grad(loss(selective_scan_reference), inputs)
    names = ["u", "delta", "A", "B", "C", "D", "z", "h0"]
    for name, got, expected in zip(names, ours, reference):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10, msg=name)


def test_the_scan_in_float32_matches_the_reference_at_an_episodes_length():
    u, delta, A, B, C, D, z, h0 = (t.detach().float().requires_grad_()
                                   for t in _scan_inputs(b=2, d=8, n=16, length=400))
    y, h = selective_scan(u, delta, A, B, C, D, z, h0)
    y_ref, h_ref = selective_scan_reference(u, delta, A, B, C, D, z, h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(y.square().mean(), (u, delta, A, B))
    grads_ref = torch.autograd.grad(y_ref.square().mean(), (u, delta, A, B))
    for got, expected in zip(grads, grads_ref):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


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
