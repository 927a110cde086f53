"""Train PPO or RecurrentPPO (sb3-contrib) on an AEM task's dense reward with a zoo encoder.

The tasks' reward is dense, in [0, 1] per step (progress towards success), so PPO gets a signal
from the first episodes. PPO sees one frame at a time; RecurrentPPO's LSTM carries a history
through the episode, which the memory tasks need. With ``--aem`` (an ``aem-bench pretrain`` run)
the frame goes through AEM's pretrained vision encoder and the environment is wrapped in
``AEMHistory``, which adds AEM's frozen history vector to the observation, so even plain PPO has a
memory (see ``aem_bench/sb3.py``). Needs ``pip install 'aem-bench[sb3]'``.

Examples::

    python examples/sb3_ppo.py --algo ppo --task AEM/ClickBell-v1 --steps 20000
    python examples/sb3_ppo.py --algo recurrent-ppo --task AEM/ShellGame-v0 --envs 4
    python examples/sb3_ppo.py --algo recurrent-ppo --aem runs/aem --camera 128

Then ``aem-bench`` cannot evaluate the result (it is an SB3 model, not a zoo checkpoint); the
script reports the success rate of a few deterministic episodes itself.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

import aem_bench  # noqa: F401 -- registers the tasks
from aem_bench.aem_history import AEMHistory
from aem_bench.sb3 import zoo_policy_kwargs
from aem_bench.seeds import EVAL_SEED_START


def make_env(task: str, camera: int, max_steps: int | None, aem: Path | None = None) -> gym.Env:
    kwargs = {"camera_size": (camera, camera)}
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    env = gym.make(task, **kwargs)
    return AEMHistory(env, aem) if aem is not None else env


def build_model(args, env):
    policy_kwargs = (zoo_policy_kwargs(aem_checkpoint=args.aem) if args.aem
                     else zoo_policy_kwargs(args.encoder, {"feature_dim": args.feature_dim}
                                            if args.encoder == "resnet" else None))
    common = {"n_steps": args.n_steps, "batch_size": args.batch_size, "seed": args.seed,
              "device": "cpu", "verbose": 1}
    if args.algo == "ppo":
        return PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs, **common)
    from sb3_contrib import RecurrentPPO

    return RecurrentPPO("MultiInputLstmPolicy", env,
                        policy_kwargs={**policy_kwargs, "lstm_hidden_size": 128}, **common)


def success_rate(model, env: gym.Env, episodes: int, seed: int, recurrent: bool) -> float:
    """Deterministic rollouts on seeds from ``seed``: the fraction that end in success."""
    successes = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        state, start, done, info = None, np.ones(1, bool), False, {}
        while not done:
            batch = {key: value[None] for key, value in obs.items()}
            if recurrent:
                action, state = model.predict(batch, state=state, episode_start=start,
                                              deterministic=True)
                start = np.zeros(1, bool)
            else:
                action, _ = model.predict(batch, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action[0])
            done = terminated or truncated
        successes += bool(info.get("is_success"))
    return successes / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["ppo", "recurrent-ppo"], default="ppo")
    parser.add_argument("--task", default="AEM/ClickBell-v1")
    parser.add_argument("--encoder", default="resnet", help="a zoo encoder (resnet trains with "
                        "PPO; dinov2, clip, r3m are pretrained and frozen)")
    parser.add_argument("--feature-dim", type=int, default=64, help="resnet's feature size")
    parser.add_argument("--aem", type=Path, help="an `aem-bench pretrain` run: use its encoder")
    parser.add_argument("--camera", type=int, default=64, help="camera side in pixels")
    parser.add_argument("--max-steps", type=int, help="shorter episodes than the task's")
    parser.add_argument("--envs", type=int, default=1, help="parallel environments (processes)")
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps")
    parser.add_argument("--n-steps", type=int, default=256, help="rollout length per env")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/sb3"))
    args = parser.parse_args()

    factory = partial(make_env, args.task, args.camera, args.max_steps, args.aem)
    vec = (SubprocVecEnv([factory] * args.envs, start_method="spawn") if args.envs > 1
           else DummyVecEnv([factory]))
    model = build_model(args, VecMonitor(vec))
    model.learn(total_timesteps=args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.algo}_{args.task.replace('/', '_')}"
    model.save(path)
    vec.close()
    rate = success_rate(model, factory(), args.eval_episodes, EVAL_SEED_START,
                        recurrent=args.algo == "recurrent-ppo")
    print(f"saved {path}.zip; success {100 * rate:.0f}% over {args.eval_episodes} episodes")


if __name__ == "__main__":
    main()
