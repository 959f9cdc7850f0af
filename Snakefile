# stargate: STaR-GATE (Andukuri et al., COLM 2024, arXiv 2403.19154) as a Snakemake workflow.
#
#   snakemake --cores 2                               # embedded default (CPU, no key, no network)
#   snakemake -n --configfile config/paper.yaml       # dry-run the paper's DAG
#   snakemake --profile profiles/slurm                # the paper on a SLURM GPU cluster
#
# This file is an index: the stages live in rules/*.smk, helpers in rules/common.smk.

import os

from snakemake.utils import min_version

min_version("9.0")


# A --configfile (e.g. config/paper.yaml) replaces the embedded default instead of being merged into
# it, so no CPU-default key leaks into another experiment. Small changes: --config key=value.
if not workflow.overwrite_configfiles:
    # read once by our loader first: a YAML syntax error then names file and line (Snakemake's does not)
    from stargate.config import read_yaml
    from stargate.errors import StargateError

    try:
        read_yaml(os.path.join(workflow.basedir, "config", "config.yaml"))
    except StargateError as exc:
        raise SystemExit(f"stargate: error in the config: {exc}")

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    split=r"A|B|test|test_trial\d+",
    t=r"\d+",
    k=r"\d+",
    shard=r"\d+",


include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/simulate.smk"
include: "rules/score.smk"
include: "rules/sft.smk"
include: "rules/online.smk"
include: "rules/train.smk"
include: "rules/specificity.smk"
include: "rules/evaluate.smk"
include: "rules/world.smk"


rule all:
    default_target: True
    input:
        rules.summarize.output,
        rules.report_tables.output,
        [paths.model(t) for t in range(1, T + 1)],
        WORLD_TARGETS,
        TURN_CREDIT_TARGETS,
        [SPECIFICITY_FILE] if SPECIFICITY_RATING else [],
    localrule: True
