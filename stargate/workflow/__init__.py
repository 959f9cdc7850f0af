"""What the Snakefile runs outside the rules: config loading and checks at start (startup.py), the path
scheme of every artifact (paths.py), command-line rendering (cli_args.py) and the config digest (digest.py)."""
