"""Rewards of a finished conversation (training.grpo.reward): what a reward is (base.py), one module each, listed
in registry.py. This file imports none of them, so a stage using one reward carries only its code."""
