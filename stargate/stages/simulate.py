"""All turns of one shard's conversations in one job (spec §3.1): each role's model is loaded once.

The turns are those of `questioner_turn` and `roleplayer_turn` (the same prompts, the same seed keys, so the
same conversations as running them turn by turn), but the Questioner m_t and the Roleplayer are each loaded
once for the whole shard instead of once per turn. Every turn still writes its own immutable files, the
outputs of this job: `turn{k}.asked.jsonl` (conversations with the new question), `turn{k}.done.jsonl`
(finished at turn k) and `turn{k}.open.jsonl` (going on), each with its turn's generation meta.

GPUs: the job holds `--gpus` devices. When both roles load a local model and `--questioner-gpus` is set, the
Questioner gets the first `--questioner-gpus` of them and the Roleplayer the rest, each in its own worker
process that sees only its devices (two vLLM engines cannot share one process's CUDA context and device
list). Otherwise (no GPU, or `--questioner-gpus 0`: small models sharing a GPU) both load in this process. A role whose turn has no conversation loads nothing.

`--gpu-sharing` (config simulation.gpu_sharing) runs both vLLM engines on all the job's GPUs instead, each in
its worker process seeing every device: `shared_memory` gives the Questioner `--questioner-memory-share` of the
smaller of the two roles' gpu_memory_utilization and the Roleplayer the rest (their sum stays within it);
`sleep` keeps each role's own gpu_memory_utilization and puts the idle engine to sleep (vLLM sleep mode level
1: weights to CPU memory, KV cache dropped) while the other generates. `stargate plan` prints the fit and
GPU-hours of each mode (docs/vllm.md).
"""

from __future__ import annotations

import argparse
import json
import os
from types import SimpleNamespace

from ..backends.kinds import loads_local_model as backend_loads_local_model
from ..errors import StargateError
from ..log import get_logger
from ..prompts import load_prompt_set
from ..records import write_jsonl
from . import questioner_turn, roleplayer_turn
from .common import add_data_arguments, load_pairs, parse_json_arg
from .generation import open_role, read_role

log = get_logger(__name__)

GPU_SHARING = ("separate", "shared_memory", "sleep")
VLLM_DEFAULT_UTILIZATION = 0.9  # vLLM's own default for gpu_memory_utilization


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--iteration", type=int, required=True, help="t of the Questioner m_t (0 = base model)")
    p.add_argument(
        "--instructed",
        action="store_true",
        help="ask m_t (t >= 1) with the Questioner instruction, as m0 is (a policy trained online so)",
    )
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--conversations", type=int, required=True, help="conversations per pair (turn 1)")
    p.add_argument("--min-turns", type=int, required=True)
    p.add_argument("--max-turns", type=int, required=True)
    p.add_argument("--seed", type=int, required=True, help="seed of the turn-count draw")
    p.add_argument("--questioner-role", required=True, help="questioner role config as JSON")
    p.add_argument("--questioner-model", required=True)
    p.add_argument("--roleplayer-role", required=True, help="roleplayer role config as JSON")
    p.add_argument("--roleplayer-model", required=True)
    p.add_argument("--gpus", type=int, default=0, help="GPUs given to this job (0 = CPU)")
    p.add_argument("--questioner-gpus", type=int, default=0, help="of --gpus, the Questioner's (the rest: Roleplayer)")
    p.add_argument(
        "--gpu-sharing",
        choices=GPU_SHARING,
        default="separate",
        help="separate: the roles on their own GPUs; shared_memory / sleep: both vLLM engines on all of them",
    )
    p.add_argument(
        "--questioner-memory-share",
        type=float,
        default=0.25,
        help="shared_memory: the Questioner's share of the gpu_memory_utilization (the Roleplayer the rest)",
    )
    p.add_argument("--asked", nargs="+", required=True, help="outputs: turn1..turnK asked files")
    p.add_argument("--done", nargs="+", required=True, help="outputs: turn1..turnK finished conversations")
    p.add_argument("--open", nargs="+", required=True, help="outputs: turn1..turnK conversations going on")


def loads_local_model(role_json: str) -> bool:
    return backend_loads_local_model(parse_json_arg(role_json, "--role").get("backend"))


def _utilization(role: dict) -> float:
    options = role.get("options") or {}
    value = (options.get("engine_args") or {}).get("gpu_memory_utilization", options.get("gpu_memory_utilization"))
    return VLLM_DEFAULT_UTILIZATION if value is None else float(value)


def shared_roles(mode: str, q_role: dict, r_role: dict, share: float) -> tuple[dict, dict]:
    """The two roles' configs as a shared mode runs them: shared_memory splits the smaller of their
    gpu_memory_utilization (the Questioner `share` of it, the Roleplayer the rest), so that both engines fit
    on the same devices; sleep turns vLLM's sleep mode on in both."""
    roles = []
    for role in (q_role, r_role):
        role = {**role, "options": dict(role.get("options") or {})}
        role["options"]["engine_args"] = dict(role["options"].get("engine_args") or {})
        roles.append(role)
    q, r = roles
    if mode == "shared_memory":
        if not 0 < share < 1:
            raise StargateError(f"--questioner-memory-share {share}: give a fraction strictly between 0 and 1")
        total = min(_utilization(q), _utilization(r))
        q_util = round(total * share, 4)
        for role, util in ((q, q_util), (r, round(total - q_util, 4))):
            role["options"]["engine_args"].pop("gpu_memory_utilization", None)
            role["options"]["gpu_memory_utilization"] = util
    elif mode == "sleep":
        for role in roles:
            role["options"]["engine_args"]["enable_sleep_mode"] = True
    return q, r


def gpu_split(args: argparse.Namespace) -> tuple[int, int, bool]:
    """(questioner GPUs, roleplayer GPUs, whether each role runs in a worker process on its own devices).

    A role without a local model gets none. When both load one: `--questioner-gpus` 1..G-1 splits the job's
    G GPUs (the Questioner the first ones, the Roleplayer the rest, one worker process each); 0 lets both
    share all G in this process (small models on one GPU with the hf backend; vLLM needs the split)."""
    q_local, r_local = loads_local_model(args.questioner_role), loads_local_model(args.roleplayer_role)
    mode = getattr(args, "gpu_sharing", "separate")
    if mode != "separate":
        backends = [parse_json_arg(r, "--role").get("backend") for r in (args.questioner_role, args.roleplayer_role)]
        if backends != ["vllm", "vllm"]:
            raise StargateError(
                f"simulation.gpu_sharing {mode} runs two vLLM engines on the same GPUs, but the questioner and "
                f"roleplayer use the {backends[0]} and {backends[1]} backends; set gpu_sharing: separate"
            )
        if args.gpus <= 0:
            if mode == "sleep":
                raise StargateError(
                    "simulation.gpu_sharing sleep needs GPUs (vLLM sleep mode is CUDA/ROCm/XPU only) and this job"
                    " has none (--gpus 0); on CPU use gpu_sharing separate (the default)"
                )
            return 0, 0, False
        return args.gpus, args.gpus, True
    if args.gpus <= 0:
        return 0, 0, False
    if not (q_local and r_local):
        return (args.gpus, 0, False) if q_local else (0, args.gpus, False)
    if args.questioner_gpus == 0:
        return args.gpus, args.gpus, False
    if not 0 < args.questioner_gpus < args.gpus:
        raise StargateError(
            f"--questioner-gpus {args.questioner_gpus} of the job's {args.gpus} GPU(s): give the Questioner "
            f"1..{args.gpus - 1} (the Roleplayer gets the rest) or 0 to share them (resources questioner_gpu; "
            "profiles/slurm: set-resources simulate)"
        )
    return args.questioner_gpus, args.gpus - args.questioner_gpus, True


class LazyRole:
    """A role's backend, opened on first use (in this process, or in a worker process on its own GPUs) and
    kept for every later turn; closed by `close()`."""

    def __init__(self, ns: SimpleNamespace, stage: str, isolate: bool, visible: str | None) -> None:
        self.ns, self.stage, self.isolate, self.visible = ns, stage, isolate, visible
        self.backend = None
        self.loads = 0

    def __call__(self):
        if self.backend is None:
            self.loads += 1
            if self.isolate:
                from .role_process import RoleProcess

                self.backend = RoleProcess(
                    read_role(self.ns), self.ns.model, self.ns.gpus, self.stage, self.visible, self.ns.prompts
                )
            else:
                self.backend = open_role(self.ns, self.stage, read_role(self.ns))
        return self.backend

    def sleep(self) -> None:
        """Its engine to sleep, when it is loaded (gpu_sharing sleep); a role not loaded yet holds nothing."""
        if self.backend is not None:
            self.backend.sleep()

    def wake_up(self) -> None:
        if self.backend is not None:
            self.backend.wake_up()

    def close(self) -> None:
        if self.backend is not None:
            log.info("%s: backend stats over all turns %s", self.stage, self.backend.stats.to_dict())
            self.backend.close()
            self.backend = None


def open_roles(args: argparse.Namespace) -> tuple[LazyRole, LazyRole]:
    q_gpus, r_gpus, isolate = gpu_split(args)
    mode = getattr(args, "gpu_sharing", "separate")
    shared = mode != "separate" and isolate
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
    need = q_gpus if shared else q_gpus + r_gpus
    if isolate and len(visible) < need:
        raise StargateError(f"the job sees GPUs {visible}, fewer than the {need} its roles need")
    q_role, r_role = args.questioner_role, args.roleplayer_role
    if shared:
        q_spec, r_spec = shared_roles(
            mode, parse_json_arg(q_role, "--role"), parse_json_arg(r_role, "--role"), args.questioner_memory_share
        )
        q_role, r_role = json.dumps(q_spec), json.dumps(r_spec)
        log.info("gpu_sharing %s: both engines on GPUs %s", mode, visible[:q_gpus])
    q = SimpleNamespace(role=q_role, model=args.questioner_model, gpus=q_gpus, prompts=args.prompts)
    r = SimpleNamespace(role=r_role, model=args.roleplayer_model, gpus=r_gpus, prompts=args.prompts)
    if shared:
        q_visible = r_visible = ",".join(visible[:q_gpus])
    else:
        q_visible = ",".join(visible[:q_gpus]) if isolate else None
        r_visible = ",".join(visible[q_gpus : q_gpus + r_gpus]) if isolate else None
    return LazyRole(q, "questioner_turn", isolate, q_visible), LazyRole(r, "roleplayer_turn", isolate, r_visible)


def run(args: argparse.Namespace) -> None:
    if not 0 <= args.shard < args.shards:
        raise StargateError(f"--shard {args.shard} is outside 0..{args.shards - 1}")
    for flag in ("asked", "done", "open"):
        if len(getattr(args, flag)) != args.max_turns:
            raise StargateError(
                f"--{flag} names {len(getattr(args, flag))} files, expected one per turn ({args.max_turns})"
            )
    pairs = load_pairs(args.tasks, args.personas)
    by_key = {p.key: p for p in pairs}
    prompts = load_prompt_set(args.prompts)
    questioner, roleplayer = open_roles(args)
    convs = questioner_turn.start_conversations(args, pairs)
    where = {"iteration": args.iteration, "shard": args.shard, "shards": args.shards}
    try:
        sleep = getattr(args, "gpu_sharing", "separate") == "sleep"
        for k in range(1, args.max_turns + 1):
            if sleep:  # the Roleplayer's engine sleeps while the Questioner's works, and the other way round
                roleplayer.sleep()
                questioner.wake_up()
            gen = questioner_turn.ask(
                questioner.ns,
                prompts,
                by_key,
                convs,
                k,
                args.iteration > 0 and not getattr(args, "instructed", False),
                args.conversations,
                backend=questioner,
            )
            write_jsonl(args.asked[k - 1], convs, {**gen.meta, "turn": k, **where})
            if sleep:
                questioner.sleep()
                roleplayer.wake_up()
            gen = roleplayer_turn.answer(roleplayer.ns, prompts, by_key, convs, k, backend=roleplayer)
            done, convs = roleplayer_turn.split_finished(convs, k)
            meta = {**gen.meta, "turn": k, **where}
            write_jsonl(args.done[k - 1], done, meta)
            write_jsonl(args.open[k - 1], convs, meta)
            log.info("turn %d: %d finished, %d open", k, len(done), len(convs))
    finally:
        questioner.close()
        roleplayer.close()
    log.info("model loads: questioner %d, roleplayer %d", questioner.loads, roleplayer.loads)
