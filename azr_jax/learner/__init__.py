"""The RL learner: token logprobs, the PPO-clip loss and the sharded policy-gradient step."""
