"""A world where the STaR-GATE loop visibly learns on a laptop (issue 13), in the spirit of TriPosT's scripted
verifiers: the users are simulated by code, so the world is cheap and honest, and the method is unchanged.

* Personas have structured attributes (diet, budget, ...), one value each.
* Each task's good answer depends on two of them (a dinner on diet and cooking skill, a trip on budget and
  scenery, ...).
* The Roleplayer (`roleplayer`) reveals an attribute only when the latest question is about it (its keywords)
  and answers vaguely otherwise.
* The Oracle's gold response (`gold`) states the task's relevant attributes and a suggestion built from them.
* The reward is still the paper's: m0's log p(gold | conversation). A conversation that elicited the relevant
  attributes lets m0 predict the gold's words, so top-k keeps the questions that ask about them.
* The judge (`judge`) prefers the answer that uses more of the user's relevant attribute values.

The three programs run behind the `scripted` backend (`options: {program: stargate.world:roleplayer}`), so
they work through the role interface with any simulation design. Personas and tasks are written to
data/world/*.json by `python -m stargate.world data/world` (checked in; a test keeps them in sync).

The code lives in `facts` (attributes, tasks), `data` (personas, the checked-in files), `reading` (how the
programs read the rendered prompts) and `programs` (the three programs); this file hands their names on.
"""

from .data import NAMES, SPLIT_PERSONAS, make_personas, persona_text, write_data
from .facts import ATTRIBUTES, TASK_BY_TEXT, TASKS, VAGUE, Task
from .programs import answer_to, elicited, gold, gold_for, judge, relevant_used, roleplayer
from .reading import (
    ATTR_LINE,
    asked_about,
    attributes_in,
    last_question,
    name_in,
    prompt_text,
    responses_in,
    task_in,
)

__all__ = [
    "ATTRIBUTES",
    "ATTR_LINE",
    "NAMES",
    "SPLIT_PERSONAS",
    "TASKS",
    "TASK_BY_TEXT",
    "VAGUE",
    "Task",
    "answer_to",
    "asked_about",
    "attributes_in",
    "elicited",
    "gold",
    "gold_for",
    "judge",
    "last_question",
    "make_personas",
    "name_in",
    "persona_text",
    "prompt_text",
    "relevant_used",
    "responses_in",
    "roleplayer",
    "task_in",
    "write_data",
]
