"""Training stage internals: the `training` config slice (spec.py), the methods (methods/: one module each,
listed in methods/registry.py), the shared driver (driver.py: data, arguments, numerics, checkpoint), SFT
tokenization and loss mask, collator, attention choice, W&B setup, process launch and the model card. The CLI
entry is stargate/stages/train.py.
"""
