"""Configuration of a visuomotor policy of the zoo: an image encoder, a window of observations, a
memory for some, and an action head (Diffusion Policy, Chi et al. 2023, or flow matching), sized
for a 2-core CPU.

Everything that decides the shape of a checkpoint, how it samples and how it is trained lives here,
so that ``config.json`` next to ``model.safetensors`` is enough to rebuild the model. The zoo's
named policies (``policies/__init__.py``) are this config with different defaults.

Sizes were chosen by measurement on a 2-vCPU machine: one training step at batch 64 (128x128
images, 116 crop) takes ~0.3 s on one thread, and an ``act()`` call that predicts a chunk takes
60-80 ms with 10 DDIM steps. At batch 1 the UNet's cost is mostly per-operation overhead (an almost
empty UNet of this depth still takes ~2.5 ms per denoising step), so sampling time scales with
``num_inference_steps`` far more than with the widths below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aem_bench.policies.config_base import JsonConfig

HEAD_NAMES = ("diffusion", "flow")
FUSIONS = ("concat", "add", "memory_only")
MEMORIES = ("gru",)
STATE_KEYS = ("qpos", "oracle", "fact")  # the low-dimensional observations a policy may read
READOUTS = ("oracle", "fact")  # what a memory's readout may be trained to estimate


@dataclass
class PolicyConfig(JsonConfig):
    JSON_DICTS = ("encoder_options", "history")

    policy_type: str = "singleframe-dp"

    # The image encoder (``policies/encoders``) by name, with its own options (widths, weights
    # file, input size). ``freeze_encoder=None`` freezes pretrained encoders and trains the others.
    encoder: str = "resnet"
    encoder_options: dict = field(default_factory=dict)
    freeze_encoder: bool | None = None
    head: str = "diffusion"  # or "flow"

    # AEM (aem-dp, aem-flow): the memory is AEM's history encoder, whose history vector joins
    # the condition. ``history`` is that encoder's AEMConfig as a dict (filled by train() from
    # ``aem_checkpoint``, the pretraining run); None: no history encoder.
    # ``pretrained_history=False`` starts the Mamba from random weights and trains it with the
    # head (an ablation).
    history: dict | None = None
    aem_checkpoint: str | None = None
    pretrained_history: bool = True
    # False fine-tunes a pretrained history encoder with the head; True keeps it as pretrained (the
    # paper's). A history trained with the head (fine-tuned or from scratch) without an
    # ``inference_window`` is trained as it runs: recurrently through whole episodes from step 0
    # (``EpisodeBatches``), over the frozen frame encoder. Fine-tuning is the default because it
    # measured best on the memory tasks (README, "Memory that works"); it trains about five times
    # slower a step than a frozen history.
    freeze_history: bool = False
    history_fusion: str = "concat"  # "concat" (joined), "add" (projected and added), "memory_only"

    # A recurrent memory (gru-dp, gru-flow; ``policies/memory.py``): "gru" reads every step's
    # frame features, state vector and previous action, and its output, the memory vector, joins
    # the condition. It is trained through whole episodes with the head, over a frozen frame
    # encoder. None: no such memory.
    memory: str | None = None
    memory_dim: int = 128
    memory_layers: int = 1
    memory_actions: bool = True  # the previous action is a memory input (action-effect pairs)
    memory_dropout: float = 0.0  # dropout on the memory's inputs while training
    # The memory reads every ``memory_stride``-th step (0, k, 2k, ...) and holds its memory
    # vector in between. A GRU's backward pass on a CPU is a loop over steps: k = 4 trains about
    # four times faster, and the loss at a decision reaches the cue through k times fewer steps.
    memory_stride: int = 4
    episodes_per_batch: int = 8  # whole episodes per training step; batch_size steps among them
    # A readout of the memory trained on privileged labels: "oracle" (or "fact") trains a linear
    # map from the memory vector (the recurrent memory's, or AEM's history vector) to that
    # control input as the demonstrations record it (binary cross-entropy, ``readout_weight``),
    # and the head reads the map's estimate (sigmoid, detached) in place of the memory vector.
    # At run time the policy sees only the frames and qpos; in training the memory task's labels
    # tell it what to keep, which a dataset of real demonstrations would not. It separates
    # "the head cannot learn to act on what the memory holds" from "the memory does not hold
    # it": the memory-swap test (``memory_use.py``) showed the first on SwapBlocks-v1. None: the
    # head reads the memory vector.
    memory_readout: str | None = None
    readout_dim: int = 0  # the estimated input's length; train() fills it from the demonstrations
    readout_weight: float = 1.0
    # Gaussian noise (std, in the normalised [-1, 1] units) on the state vector while training:
    # an expert's joint angles can carry a hidden fact (how the arm got where it is) that the
    # policy's own motion does not reproduce; noise keeps a policy from leaning on that fine print.
    state_noise: float = 0.0

    # A trained policy checkpoint (e.g. the single-frame DP of the same demonstrations) whose
    # frame encoder this policy takes, frozen: memories compared over one frame encoder differ
    # only in their memory. None: the encoder the config names, as built.
    encoder_checkpoint: str | None = None

    # The state vector, the policy's low-dimensional input, concatenated in this order: "qpos"
    # (proprioception: two 7-DoF arms + one gripper each) and, for the memory tasks' controls, a
    # control input: "oracle" (what the hidden fact says to do next) or "fact" (the hidden fact
    # alone). Not the environment's state observation (object poses).
    state_keys: tuple[str, ...] = ("qpos",)

    # Shapes of the data. ``train()`` fills these from the demonstration file.
    state_dim: int = 16  # the state vector's length: the state_keys entries' together
    action_dim: int = 16  # absolute joint-position targets, same layout as qpos
    image_size: tuple[int, int] = (128, 128)  # (H, W) of the camera image the policy expects

    # Horizons. Observations t-obs_horizon+1 .. t predict actions t .. t + pred_horizon - 1; the
    # first action_steps of them are executed before predicting again (receding horizon).
    # Frame stacking is obs_horizon = k. RoboTwin's DP uses 3 / 8 / 6.
    obs_horizon: int = 1
    pred_horizon: int = 16
    action_steps: int = 8

    # Vision: random crop while training, centre crop at run time (~90% of the side, as in the
    # paper). Frozen encoders see the centre crop only: their features are computed once.
    # None: 90% of the image side (116 for 128).
    crop_size: int | None = None

    # The head's network: 1-D UNet over the action chunk, FiLM-conditioned.
    down_dims: tuple[int, ...] = (32, 64, 128)
    kernel_size: int = 3  # the paper's 5 costs ~10% more per training step and act()
    n_groups: int = 8
    timestep_embed_dim: int = 64

    # Sampling steps: DDIM steps (diffusion) or Euler steps (flow).
    num_inference_steps: int = 10

    # Diffusion: DDPM noise schedule for training, DDIM with few steps for sampling.
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    # "sample" (predict the clean chunk) rather than the paper's "epsilon" (predict the noise):
    # within a CPU budget of a few thousand steps, epsilon models did not learn to use the image
    # (toy task: a square's position -> action; held-out error 0.35 after 1500 steps at lr 1e-3,
    # worse than predicting zero at lr 1e-4), while sample models reached 0.04 after 600 steps.
    prediction_type: str = "sample"  # or "epsilon"
    clip_sample: bool = True  # actions are normalised to [-1, 1]

    # Flow: weight of the consistency loss (0 = plain flow matching) and its time offset.
    consistency_weight: float = 0.0
    consistency_delta: float = 0.05

    # Optimisation: AdamW as in the paper, cosine schedule with linear warmup. The paper's lr of
    # 1e-4 is for hundreds of epochs; for ~15 epochs on a CPU and this small a network, 1e-3
    # learned the toy task above 5x better in 600 steps (0.041 vs 0.197 error; 3e-4: 0.083).
    lr: float = 1e-3
    betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = 1e-6
    lr_warmup_steps: int = 200
    batch_size: int = 64
    grad_clip_norm: float | None = 10.0
    ema_decay: float | None = 0.995  # None trains and saves the raw weights

    def validate(self) -> None:
        require = self.require
        require(len(self.state_keys) > 0 and set(self.state_keys) <= set(STATE_KEYS),
                f"state_keys must be taken from {STATE_KEYS}, got {self.state_keys}")
        require(self.obs_horizon >= 1, f"obs_horizon must be >= 1, got {self.obs_horizon}")
        require(
            1 <= self.action_steps <= self.pred_horizon,
            f"action_steps ({self.action_steps}) must be in 1..pred_horizon ({self.pred_horizon})",
        )
        # Every UNet level but the last halves the chunk length; the up path must land on it again.
        factor = 2 ** (len(self.down_dims) - 1)
        require(
            self.pred_horizon % factor == 0,
            f"pred_horizon ({self.pred_horizon}) must be divisible by {factor} "
            f"for {len(self.down_dims)} UNet levels",
        )
        require(
            self.crop_size <= min(self.image_size),
            f"crop_size ({self.crop_size}) is larger than image_size {self.image_size}",
        )
        bad = [c for c in self.down_dims if c % self.n_groups]
        require(not bad, f"down_dims {self.down_dims} must be multiples of n_groups")
        require(self.head in HEAD_NAMES, f"head must be one of {HEAD_NAMES}, got {self.head!r}")
        require(self.history_fusion in FUSIONS, f"history_fusion must be one of {FUSIONS}")
        if self.history is not None:
            require(self.obs_horizon == 1, "a policy with an AEM history takes one frame "
                    f"(obs_horizon 1), got {self.obs_horizon}")
            require(self.history_frozen or self.history.get("inference_window") is not None
                    or self.freeze_encoder is True,
                    "a history trained with the head reads either a window "
                    "(history.inference_window) or whole episodes over a frozen frame encoder")
        if self.memory is not None:
            require(self.memory in MEMORIES, f"memory must be one of {MEMORIES}, got "
                    f"{self.memory!r}")
            require(self.obs_horizon == 1 and self.history is None,
                    "a recurrent memory takes one frame (obs_horizon 1) and no AEM history")
            require(self.freeze_encoder is True or self.encoder_checkpoint is not None,
                    "a recurrent memory is trained over a frozen frame encoder: give "
                    "encoder_checkpoint (a trained policy) or freeze_encoder=true")
            require(self.memory_dim >= 1 and self.memory_layers >= 1 and self.memory_stride >= 1,
                    "memory_dim, memory_layers and memory_stride must be >= 1")
            require(0.0 <= self.memory_dropout < 1.0, "memory_dropout must be in [0, 1)")
            require(self.episodes_per_batch >= 1, "episodes_per_batch must be >= 1")
        if self.memory_readout is not None:
            require(self.memory_readout in READOUTS, f"memory_readout must be one of {READOUTS} "
                    f"or null, got {self.memory_readout!r}")
            require(self.memory is not None or self.history is not None,
                    "memory_readout reads a memory: the policy needs a recurrent memory or an "
                    "AEM history")
            require(self.memory_readout not in self.state_keys,
                    f"the policy reads '{self.memory_readout}' itself (state_keys): a readout "
                    f"estimating it from memory would be pointless")
            require(self.readout_dim >= 1 and self.readout_weight > 0,
                    "readout_dim must be >= 1 (train() sets it) and readout_weight > 0")
        require(self.state_noise >= 0, f"state_noise must be >= 0, got {self.state_noise}")
        require(isinstance(self.encoder_options, dict), "encoder_options must be a dict")
        require(self.prediction_type in ("epsilon", "sample"), "prediction_type: epsilon|sample")
        require(self.num_inference_steps >= 1, "num_inference_steps must be >= 1")
        require(
            self.head != "diffusion" or self.num_inference_steps <= self.num_train_timesteps,
            "num_inference_steps must be <= num_train_timesteps for the diffusion head",
        )
        require(self.consistency_weight >= 0 and 0 < self.consistency_delta <= 1,
                "consistency_weight >= 0 and consistency_delta in (0, 1]")
        require(self.ema_decay is None or 0.0 < self.ema_decay < 1.0, "ema_decay in (0, 1)")

    @property
    def history_frozen(self) -> bool:
        return self.pretrained_history and self.freeze_history
