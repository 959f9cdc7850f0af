"""Training methods (`training.method`): what a method is (base.py), one module each, the offline ones listed in
offline.py and every one in registry.py. This file imports none of them, so a stage importing one list does not
carry the others' code in its fingerprint."""
