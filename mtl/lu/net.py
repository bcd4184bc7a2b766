"""The learned updater of Learning to Update: a stacked ConvGRU that writes the target model.

Shapes (SiamFC, quarter-width AlexNet): a target model ``θ`` is ``(B, d, m, m)`` = ``(B, 64, 6, 6)``;
the recurrent state is one ``(B, hidden, m, m)`` map per layer. Per frame ``t`` (LU Sec. IV-C)::

    θ'_t = g(x̄_t)                          the exemplar projected to model space (SiamFC: identity)
    h_t  = ConvGRU(h_{t-1}, θ'_t / s)       every frame, two stacked layers
    θ    = s · conv3x3([h¹_t; h²_t])         every M frames (interval update): replaces the model

``s`` is a fixed feature scale (the RMS of training exemplars), so the recurrent cells see inputs of
order 1 whatever the backbone's units (our choice; the paper's features need none). The model is
generated directly, not as a residual on θ₁ (the paper's design: an untrained updater gives θ ≈ 0).

GRU convention (Cho et al. 2014, as most ConvGRU code): ``r`` gates the state *before* the
convolution, ``c = tanh(W_c * [x, r ⊙ h])``; PyTorch's ``nn.GRUCell`` gates after it
(``r ⊙ (W_hn h + b)``). The unit tests check the cell against a hand-written GRU of this convention.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

CELLS = ("gru", "lstm")


@dataclass(frozen=True)
class LUConfig:
    """Learning to Update's updater and its training (LU Sec. IV-V; ``specs/gradnet_lu.md`` §2).

    Updater: ``layers`` stacked ConvGRU (or ConvLSTM, Table II(b)) layers of ``hidden`` channels, 3x3
    kernels, layer normalisation (``GroupNorm(1, ·)`` on each gate's pre-activation; the paper does not
    say where) and dropout ``dropout`` on the candidate (rate not stated in the paper). ``interval``:
    M, the target model is replaced every M frames (the paper gives no value). Training: clips of
    ``clip_length`` frames taken every ``frame_step`` frames of ``synth:train`` (features cached), truncated
    BPTT with unroll ``unroll`` (H, a multiple of M), loss ``(1 - λ) l_c + λ l_a`` with ``λ =
    anchor_weight`` and ``l_a = ‖θ - θ₁‖² / ‖θ₁‖²`` (the paper's ``‖θ - θ₁‖² / (m m d)`` divided by
    ``mean(θ₁²)``, so λ means the same at any feature scale). ``estimated_position``: the exemplar of
    frame t is cut where the model in force puts the target (the argmax of its response with the
    tracker's cosine window), not at the ground truth (teacher forcing). Adam ``lr`` decayed
    exponentially to ``lr * lr_decay`` over the epochs, weight decay, gradient clipping at
    ``grad_clip`` (not in the paper).
    """

    hidden: int = 48
    layers: int = 2
    cell: str = "gru"
    layer_norm: bool = True
    dropout: float = 0.1
    interval: int = 5
    unroll: int = 25
    anchor_weight: float = 0.3  # chosen on val in notebook 04 among 0, 0.03, 0.1, 0.3, 1
    estimated_position: bool = True
    clip_length: int = 50
    frame_step: int = 2
    num_clips: int = 400
    val_clips: int = 30
    epochs: int = 12
    batch_size: int = 8
    lr: float = 1e-3
    lr_decay: float = 0.1
    weight_decay: float = 5e-4
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.layers < 1 or self.hidden < 1:
            raise ValueError(f"layers and hidden must be >= 1, got {self.layers}, {self.hidden}")
        if self.interval < 1 or self.unroll < 1 or self.unroll % self.interval:
            raise ValueError(f"unroll H must be a positive multiple of the interval M, got H={self.unroll}, "
                             f"M={self.interval}")
        if not 0 <= self.anchor_weight <= 1:
            raise ValueError(f"anchor_weight λ must be in [0, 1], got {self.anchor_weight!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.clip_length < 2 or self.frame_step < 1:
            raise ValueError(f"clip_length must be >= 2 and frame_step >= 1, got {self.clip_length}, {self.frame_step}")


#: Quick mode: the whole pipeline in seconds (the numbers mean nothing).
LU_QUICK_OVERRIDES = {"num_clips": 8, "val_clips": 4, "clip_length": 12, "unroll": 10, "epochs": 1, "batch_size": 4}


def config_variant(config: LUConfig, **changes) -> LUConfig:
    """``config`` with ``changes`` (an ablation's row); validated like any config."""
    return dataclasses.replace(config, **changes)


class ConvGRUCell(nn.Module):
    """One ConvGRU layer (Cho et al.'s convention, see the module docstring).

    ``forward(x (B, in, m, m), h (B, hidden, m, m)) -> h' (B, hidden, m, m)``::

        u = σ(N_u(W_u * [x, h]))           update gate: how much of the candidate enters
        r = σ(N_r(W_r * [x, h]))           reset gate
        c = act(N_c(W_c * [x, r ⊙ h]))    candidate (dropout in training)
        h' = (1 - u) ⊙ h + u ⊙ c

    ``N_*``: ``GroupNorm(1, hidden)`` when ``layer_norm`` (one mean and variance over channels and
    positions of each sample: layer normalisation of a feature map), else the identity. ``activation``:
    ``"tanh"``, or ``"identity"`` for the self-check in which the cell reduces to an EMA.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, layer_norm: bool = True,
                 dropout: float = 0.0, activation: str = "tanh"):
        super().__init__()
        if activation not in ("tanh", "identity"):
            raise ValueError(f"activation must be 'tanh' or 'identity', got {activation!r}")
        pad = kernel_size // 2
        self.hidden = int(hidden)
        self.gates = nn.Conv2d(in_channels + hidden, 2 * hidden, kernel_size, padding=pad)  # u and r
        self.candidate = nn.Conv2d(in_channels + hidden, hidden, kernel_size, padding=pad)
        norm = (lambda: nn.GroupNorm(1, hidden)) if layer_norm else nn.Identity
        self.norm_u, self.norm_r, self.norm_c = norm(), norm(), norm()
        self.dropout = nn.Dropout(dropout)
        self.activation = activation

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        u_pre, r_pre = self.gates(torch.cat([x, h], 1)).chunk(2, dim=1)
        u, r = torch.sigmoid(self.norm_u(u_pre)), torch.sigmoid(self.norm_r(r_pre))
        c = self.norm_c(self.candidate(torch.cat([x, r * h], 1)))
        c = self.dropout(torch.tanh(c) if self.activation == "tanh" else c)
        return (1 - u) * h + u * c


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer (Table II(b)'s alternative), state ``(h, c)`` stacked on channels.

    ``forward(x (B, in, m, m), state (B, 2 hidden, m, m)) -> state'``: input, forget, output gates
    and the candidate from one convolution of ``[x, h]``, each layer-normalised as in
    :class:`ConvGRUCell`; dropout on the candidate. Its output (what the next layer and the model
    head read) is ``h``, the first half of the state.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, layer_norm: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.hidden = int(hidden)
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)
        self.norms = nn.ModuleList([nn.GroupNorm(1, hidden) if layer_norm else nn.Identity() for _ in range(4)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        h, c = state.chunk(2, dim=1)
        i, f, o, g = (n(p) for n, p in zip(self.norms, self.conv(torch.cat([x, h], 1)).chunk(4, dim=1)))
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.dropout(torch.tanh(g))
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], 1)


class LUNet(nn.Module):
    """The updater ``u_φ``: stacked recurrent cells and the conv that writes the target model.

    ``channels``: d, the target model's channels; ``scale``: the fixed feature scale ``s`` (a buffer,
    stored with the weights). State: a list with one tensor per layer (``(B, hidden, m, m)``; LSTM:
    ``(B, 2 hidden, m, m)``). ``step(state, θ')`` advances it by one frame, ``model(state)`` writes θ,
    ``forward(θ' sequence)`` runs a whole sequence (for the stepwise-equals-full check).
    """

    def __init__(self, channels: int, config: LUConfig | None = None, scale: float = 1.0):
        super().__init__()
        self.config = cfg = config or LUConfig()
        self.channels = int(channels)
        make = ConvGRUCell if cfg.cell == "gru" else ConvLSTMCell
        self.cells = nn.ModuleList([make(channels if k == 0 else cfg.hidden, cfg.hidden, 3, cfg.layer_norm, cfg.dropout)
                                    for k in range(cfg.layers)])
        self.out = nn.Conv2d(cfg.layers * cfg.hidden, channels, 3, padding=1)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def _state_channels(self) -> int:
        return self.config.hidden * (2 if self.config.cell == "lstm" else 1)

    def initial_state(self, theta1: torch.Tensor) -> list[torch.Tensor]:
        """Zeros for every layer, shaped after ``θ₁`` ``(B, d, m, m)`` (the paper's empty training set)."""
        b, _, m, n = theta1.shape
        return [theta1.new_zeros(b, self._state_channels(), m, n) for _ in self.cells]

    def step(self, state: list[torch.Tensor], theta_prime: torch.Tensor) -> list[torch.Tensor]:
        """One frame: ``θ'`` ``(B, d, m, m)`` in model units -> the new state (every layer)."""
        x = theta_prime / self.scale
        new = []
        for cell, h in zip(self.cells, state):
            h = cell(x, h)
            new.append(h)
            x = h[:, :self.config.hidden]  # LSTM: the next layer reads h, not the cell memory
        return new

    def model(self, state: list[torch.Tensor]) -> torch.Tensor:
        """The target model θ ``(B, d, m, m)`` written from the concatenated hidden states."""
        return self.out(torch.cat([h[:, :self.config.hidden] for h in state], 1)) * self.scale

    def forward(self, theta_primes: torch.Tensor) -> torch.Tensor:
        """A whole sequence ``(T, B, d, m, m)`` -> the model after each frame ``(T, B, d, m, m)`` (from zero state)."""
        state = self.initial_state(theta_primes[0])
        out = []
        for tp in theta_primes:
            state = self.step(state, tp)
            out.append(self.model(state))
        return torch.stack(out)
