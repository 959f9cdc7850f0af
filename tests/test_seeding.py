"""The seeding contract (stargate/seeding.py): a seed is a function of (role seed, stream, key) only."""

from stargate.seeding import content_seed, derive_seed, sample_seeds


def test_seed_is_a_function_of_its_key_only():
    a = derive_seed(1, "questioner_turn", "A-t0000|A-p00", 2, 3)
    assert a == derive_seed(1, "questioner_turn", "A-t0000|A-p00", 2, 3)
    others = {
        derive_seed(2, "questioner_turn", "A-t0000|A-p00", 2, 3),  # role seed
        derive_seed(1, "roleplayer_turn", "A-t0000|A-p00", 2, 3),  # stream
        derive_seed(1, "questioner_turn", "A-t0001|A-p00", 2, 3),  # pair
        derive_seed(1, "questioner_turn", "A-t0000|A-p00", 1, 3),  # conversation
        derive_seed(1, "questioner_turn", "A-t0000|A-p00", 2, 2),  # turn
        derive_seed(1, "questioner_turn", "A-t0000|A-p00", None, 3),
    }
    assert a not in others and len(others) == 6


def test_seed_range_leaves_room_for_n_samples():
    seeds = [derive_seed(s, "x", k) for s in range(50) for k in range(50)]
    assert all(0 <= s < 2**30 for s in seeds) and len(set(seeds)) == len(seeds)
    assert sample_seeds(7, 3) == [7, 8, 9]


def test_content_seed_matches_the_previous_vllm_request_seed():
    """Runs made before the contract keep their vLLM samples when no key is given (same hash as before)."""
    import hashlib
    import json

    prompt = [{"role": "user", "content": "hi"}]
    old = (
        int.from_bytes(
            hashlib.sha256(json.dumps([3, prompt], ensure_ascii=False, sort_keys=True).encode()).digest()[:4], "big"
        )
        & 0x3FFF_FFFF
    )
    assert content_seed(3, prompt) == old
