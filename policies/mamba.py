"""Mamba (Gu & Dao, 2023) on every machine: mamba_ssm's CUDA scan kernel where it can run, else
the same layer in plain PyTorch.

:class:`Mamba` has the parameter names and shapes of ``mamba_ssm.Mamba`` (``in_proj``, ``conv1d``,
``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so one state dict loads in both. On a
CUDA tensor with ``mamba_ssm`` importable, a sequence that starts from the zero state (training,
pretraining) goes through mamba_ssm's ``selective_scan_fn`` kernel; a sequence that continues a
carried state (run time) uses the PyTorch scan, which the kernel's interface cannot start from a
state.

Two ways to run it, with equal outputs (tested):

- ``forward(x)`` over a whole sequence (training, pretraining);
- ``step(x_t, state)`` one token at a time, carrying the causal convolution's last ``d_conv - 1``
  inputs and the SSM state: a control step costs the same at step 5 and at step 500.

The selective scan is the recurrence of the paper's Algorithm 2, written as a loop over time
(``selective_scan_reference``, the formula itself, differentiated by autograd). Trained through
whole episodes (hundreds of tokens) that loop's backward pass is mostly autograd's bookkeeping,
one graph node per small operation per step, so training runs ``selective_scan``: the same loop
with its gradient written out as the reverse recurrence (``SelectiveScan``), about eight times
faster forward and backward on one CPU core at an episode's length (BENCHMARKS.md), and equal to
the reference to rounding (tests/test_mamba.py checks values and gradients, and gradcheck).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def selective_scan_reference(u, delta, A, B, C, D, z=None, h0=None):
    """The selective SSM over time, as ``mamba_ssm``'s ``selective_scan_ref`` (delta already
    passed through softplus with its bias).

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state); B, C: (batch, d_state, L); D: (d_inner,).
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = C_t . h_t + D u_t;  y *= silu(z).
    h0: the state before the first step (default zeros). Returns y (batch, d_inner, L) and the
    last state (batch, d_inner, d_state).
    """
    batch, d_inner, length = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1]) if h0 is None else h0
    ys = []
    for t in range(length):
        h, y = _ssm_update(h, u[..., t], delta[..., t], A, B[..., t], C[..., t], D)
        ys.append(y)
    y = torch.stack(ys, dim=-1)
    if z is not None:
        y = y * F.silu(z)
    return y, h


def selective_scan(u, delta, A, B, C, D, z=None, h0=None):
    """:func:`selective_scan_reference`'s values, with the gradient of :class:`SelectiveScan`."""
    if h0 is None:
        h0 = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    y, h = SelectiveScan.apply(u, delta, A, B, C, D, h0)
    if z is not None:
        y = y * F.silu(z)
    return y, h


class SelectiveScan(torch.autograd.Function):
    """The selective scan without the silu(z) gate, its backward pass the reverse recurrence.

    Forward keeps every state h_t (L + 1 of them, (b, d, n) each: an episode of 860 tokens at
    batch 8, d 128, n 16 is 56 MB). Backward runs t = L-1 .. 0 with g = dLoss/dh_t:
    g += C_t gy_t (from y_t); then the gradients of the step's inputs, from
    h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t; then g = exp(delta_t A) g, which is
    dLoss/dh_{t-1} before y_{t-1}'s part. Everything is kept time-major so each step's slice is
    contiguous."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, h0):
        length = u.shape[-1]
        ut, dt = u.permute(2, 0, 1).contiguous(), delta.permute(2, 0, 1).contiguous()  # (L, b, d)
        Bt, Ct = B.permute(2, 0, 1).contiguous(), C.permute(2, 0, 1).contiguous()  # (L, b, n)
        states = u.new_empty(length + 1, *h0.shape)
        states[0] = h0
        ys = u.new_empty(length, *u.shape[:2])
        drive = dt * ut
        for t in range(length):
            h = torch.exp(dt[t, :, :, None] * A).mul_(states[t])
            states[t + 1] = h.add_(drive[t, :, :, None] * Bt[t, :, None])
            torch.bmm(h, Ct[t, :, :, None], out=ys[t, :, :, None])
        ctx.save_for_backward(ut, dt, A, Bt, Ct, D, states)
        return ys.permute(1, 2, 0) + D[:, None] * u, states[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_h):
        ut, dt, A, Bt, Ct, D, states = ctx.saved_tensors
        length = ut.shape[0]
        if grad_y is None:
            grad_y = ut.new_zeros(ut.shape[1], ut.shape[2], length)
        gy = grad_y.permute(2, 0, 1).contiguous()  # (L, b, d)
        drive = dt * ut
        g = states[0].new_zeros(states[0].shape) if grad_h is None else grad_h.clone()
        grad_A = torch.zeros_like(A)
        grad_B, grad_C = torch.empty_like(Bt), torch.empty_like(Ct)
        grad_drive, grad_log_decay = torch.empty_like(ut), torch.empty_like(ut)
        for t in range(length - 1, -1, -1):
            g.add_(gy[t, :, :, None] * Ct[t, :, None])
            torch.bmm(gy[t, :, None], states[t + 1], out=grad_C[t, :, None])
            torch.bmm(g, Bt[t, :, :, None], out=grad_drive[t, :, :, None])  # dLoss/d(delta u)
            torch.bmm(drive[t, :, None], g, out=grad_B[t, :, None])
            g.mul_(torch.exp(dt[t, :, :, None] * A))
            x = g * states[t]  # dLoss/d(delta_t A), elementwise
            grad_log_decay[t] = (x * A).sum(-1)
            grad_A.add_((x * dt[t, :, :, None]).sum(0))
        grad_delta = (grad_log_decay + grad_drive * ut).permute(1, 2, 0)
        grad_u = (grad_drive * dt).permute(1, 2, 0) + grad_y * D[:, None]
        grad_D = (grad_y * ut.permute(1, 2, 0)).sum((0, 2))
        return (grad_u, grad_delta, grad_A, grad_B.permute(1, 2, 0), grad_C.permute(1, 2, 0),
                grad_D, g)


def _ssm_update(h, u, delta, A, B, C, D):
    """One step of the recurrence: h (b, d, n), u and delta (b, d), B and C (b, n)."""
    h = torch.exp(delta[..., None] * A) * h + (delta * u)[..., None] * B[:, None, :]
    return h, (h * C[:, None, :]).sum(-1) + D * u


class Mamba(nn.Module):
    """One Mamba mixer: (batch, L, d_model) -> (batch, L, d_model), causal in L."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

        # mamba_ssm's initialisation: dt spread log-uniformly in [dt_min, dt_max] through the
        # inverse softplus of the bias; A = -(1..d_state) per channel (S4D-real); D = 1.
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def _ssm_inputs(self, x):
        """x (b, L, d_inner) after the convolution -> delta (b, d_inner, L), B, C (b, n, L)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # dt_proj's bias is mamba_ssm's delta_bias
        return delta.transpose(1, 2), B.transpose(1, 2), C.transpose(1, 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        y, _ = self.forward_with_state(hidden)
        return y

    def forward_with_state(self, hidden: torch.Tensor, state=None):
        """Outputs (b, L, d_model) of a sequence that continues from ``state`` (None: the start),
        and the state after its last token: running a sequence in chunks gives the outputs of
        running it whole."""
        if state is None:
            state = self.initial_state(hidden.shape[0], hidden.device, hidden.dtype)
        conv_state, h0 = state
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (b, L, d_inner) each
        x_in = torch.cat([conv_state, x.transpose(1, 2)], dim=-1)  # the last inputs, then these
        x = F.silu(F.conv1d(x_in, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner))
        delta, B, C = self._ssm_inputs(x.transpose(1, 2))
        A = -torch.exp(self.A_log)
        if x.is_cuda and not h0.any() and cuda_kernels_available(x.device):
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

            y, h = selective_scan_fn(x.contiguous(), delta.contiguous(), A, B.contiguous(),
                                     C.contiguous(), self.D.float(), z.transpose(1, 2).contiguous(),
                                     return_last_state=True)
        else:
            y, h = selective_scan(x, delta, A, B, C, self.D, z.transpose(1, 2), h0)
        return self.out_proj(y.transpose(1, 2)), (x_in[..., -(self.d_conv - 1):], h)

    def initial_state(self, batch: int, device=None, dtype=torch.float32):
        """Zero state: the convolution's last d_conv - 1 inputs and the SSM state."""
        return (torch.zeros(batch, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
                torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype))

    def step(self, hidden: torch.Tensor, state):
        """One token (b, d_model) -> output (b, d_model) and the new state."""
        conv_state, h = state
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        window = torch.cat([conv_state, x[..., None]], dim=-1)  # (b, d_inner, d_conv)
        conv = (window * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            conv = conv + self.conv1d.bias
        x = F.silu(conv)
        delta, B, C = (t[..., 0] for t in self._ssm_inputs(x[:, None]))
        h, y = _ssm_update(h, x, delta, -torch.exp(self.A_log), B, C, self.D)
        y = y * F.silu(z)
        return self.out_proj(y), (window[..., 1:], h)


@functools.cache
def _mamba_ssm_importable() -> bool:
    try:
        import mamba_ssm  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_kernels_available(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda" and _mamba_ssm_importable()
