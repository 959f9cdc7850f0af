"""Online training: the multi-turn rollout the policy plays against the Roleplayer role (rollout.py)."""
