"""Arithmetic word problems of graded difficulty for the CPU demo, generated deterministically.

The embedded SmolLM2-135M solves almost no GSM8K problem, so on GSM8K every TOPS selection is empty and
the loop has nothing to learn from. These problems are a story about one quantity changed by 1 to
`max_level` operations (buy, give away, double, share equally); the level is the number of operations,
and the small model solves some problems at every level, more at level 1. The same `seed` always gives
the same problems; every role (seed, effort, iteration, test) draws from its own seed, and a problem
text never appears in two roles.

SmolLM2-135M cannot write a correct worked solution for these either (about 2% at temperature 0.7), so
the demo's teacher is `SolverBackend` (`--backend solver`): it writes each problem's worked solution
from its recorded steps, short under the low effort prompt, step by step under medium, step by step
and checked again under high. It plays QwQ-32B-Preview's part in seed generation only; every later
response comes from the real model trained on these seeds.

    tops-demo-problems -o runs/demo/data        # seed.jsonl, effort.jsonl, iter.jsonl, test.jsonl
    tops-demo-problems -o runs/demo/data --gsm8k ../shared/data/gsm8k_test.jsonl --gsm8k-limit 8
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tops_plugin.generation.base import GenerationRequest
from tops_plugin.cli.args import add_renamed, command_parser, input_file, positive_int
from tops_plugin.jsonl import read_jsonl, write_jsonl

__all__ = ["ROLES", "SolverBackend", "make_problem", "make_problems", "worked_solution", "write_problem_sets"]

NAMES = ("Tom", "Mia", "Sam", "Lily", "Ben", "Emma", "Noah", "Ava", "Leo", "Zoe", "Max", "Ella")
ITEMS = ("apples", "marbles", "stickers", "books", "pencils", "cookies", "coins", "shells", "cards", "toys")

# One operation on the quantity: None when it does not apply to `value`, else (new value, the sentence
# that tells it, the equation that computes it).
Operation = Callable[[random.Random, str, str, int], tuple[int, str, str] | None]


def _buy(rng: random.Random, name: str, item: str, value: int) -> tuple[int, str] | None:
    n = rng.randint(2, 15)
    verb = rng.choice(("buys", "finds", "gets"))
    return value + n, f"Then {name} {verb} {n} more {item}.", f"{value} + {n} = {value + n}"


def _give(rng: random.Random, name: str, item: str, value: int) -> tuple[int, str] | None:
    if value < 3:
        return None
    n = rng.randint(1, min(value - 1, 12))
    friend = rng.choice([x for x in NAMES if x != name])
    return value - n, f"Then {name} gives {n} {item} to {friend}.", f"{value} - {n} = {value - n}"


def _double(rng: random.Random, name: str, item: str, value: int) -> tuple[int, str] | None:
    if value > 40:
        return None
    factor, word = rng.choice(((2, "doubles"), (3, "triples")))
    return value * factor, f"Then {name} {word} the number of {item}.", f"{value} * {factor} = {value * factor}"


def _share(rng: random.Random, name: str, item: str, value: int) -> tuple[int, str] | None:
    parts = [k for k in (2, 3, 4, 5) if value % k == 0 and value // k >= 2]
    if not parts:
        return None
    k = rng.choice(parts)
    return value // k, f"Then {name} shares them equally among {k} boxes and keeps one box.", f"{value} / {k} = {value // k}"


OPERATIONS: tuple[Operation, ...] = (_buy, _give, _double, _share)


def make_problem(rng: random.Random, level: int) -> tuple[str, int, list[list[str]]]:
    """(problem text, integer answer, steps) for a story of `level` operations on one quantity; each step
    is [sentence, equation], e.g. ["Then Sam gets 8 more marbles.", "5 + 8 = 13"]."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(3, 20)
    sentences, steps = [f"{name} has {value} {item}."], []
    while len(steps) < level:
        step = rng.choice(OPERATIONS)(rng, name, item, value)
        if step is not None:
            value, sentence, equation = step
            sentences.append(sentence)
            steps.append([sentence, equation])
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), value, steps


# role -> seed; a role's problems never repeat another role's text.
ROLES: dict[str, int] = {"seed": 1, "effort": 2, "iter": 3, "test": 4}


def make_problems(role: str, per_level: int, max_level: int = 4, taken: set[str] | None = None) -> list[dict]:
    """`per_level` problems of each level 1..max_level, as `{id, problem, answer, level, steps}` rows, in
    the order level 1, 2, …, max_level, 1, 2, ….

    `taken` holds problem texts already used (by other roles); it is updated, and a repeat is drawn again.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if per_level < 1 or max_level < 1:
        raise ValueError(f"per_level and max_level must be >= 1, got {per_level} and {max_level}")
    rng = random.Random(ROLES[role])
    taken = set() if taken is None else taken
    rows = []
    for index in range(per_level):  # levels interleaved: the first N rows cover every level
        for level in range(1, max_level + 1):
            problem, answer, steps = make_problem(rng, level)
            while problem in taken:
                problem, answer, steps = make_problem(rng, level)
            taken.add(problem)
            rows.append({"id": f"demo-{role}-L{level}-{index:03d}", "problem": problem, "answer": str(answer),
                         "level": level, "steps": steps})
    return rows


def write_problem_sets(out_dir: str | Path, sizes: dict[str, int], max_level: int = 4) -> dict[str, Path]:
    """Write `ROLE.jsonl` for each role in `sizes` (role -> problems per level); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    paths = {}
    for role in ROLES:  # a fixed order, so `taken` (and so every file) does not depend on `sizes`' order
        if role in sizes:
            paths[role] = out_dir / f"{role}.jsonl"
            write_jsonl(paths[role], make_problems(role, sizes[role], max_level, taken))
    return paths


def worked_solution(problem: dict, effort: str | None) -> str:
    """The worked solution of a demo problem at one effort (None: as medium)."""
    steps, answer = problem["steps"], problem["answer"]
    if effort == "low":
        return f"{', '.join(equation for _, equation in steps)}. The answer is \\boxed{{{answer}}}."
    lines = [f"Step {i}: {sentence[len('Then '):]} So {equation}." for i, (sentence, equation) in enumerate(steps, 1)]
    if effort == "high":
        lines = ["Let me work through the story one step at a time.", *lines,
                 "Let me check every step again.",
                 *(f"Check step {i}: {equation}, which is right." for i, (_, equation) in enumerate(steps, 1))]
    return "\n".join([*lines, f"The answer is \\boxed{{{answer}}}."])


class SolverBackend:
    """`load_backend("recipes.demo_problems:SolverBackend", "demo-solver")` (the recipe's ``solver``):
    worked solutions of demo problems (rows with `steps`)."""

    name = "solver"

    def __init__(self, model: str = "demo-solver", **options):
        if options:
            raise ValueError(f"the solver backend takes no options, got {sorted(options)}")
        self.model = model
        self.errors: list[tuple[object, str]] = []

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[dict]:
        from tops_plugin.generation.base import valid_requests
        from tops_plugin.generation.outputs import RawOutput, make_records

        for request, messages in valid_requests(requests, self.errors):
            if not isinstance(request.problem.get("steps"), list):
                self.errors.append((request.id, "no `steps`: not a demo problem"))
                continue
            text = worked_solution(request.problem, request.effort)
            outputs = [RawOutput(request, sample, messages, text, "stop", len(text.split()))
                       for sample in request.sample_indices]
            yield from make_records(outputs, self.model)

    def close(self) -> None:
        pass


DEFAULT_SIZES = {"seed": 4, "effort": 4, "iter": 3, "test": 4}


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("tops-demo-problems", __doc__.split("\n\n")[0])
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("-o", "--output", metavar="DIR",
                        help="directory for seed.jsonl, effort.jsonl, iter.jsonl, test.jsonl")
    output.add_argument("output", nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # former spelling
    parser.add_argument("--levels", type=positive_int, default=4, metavar="N",
                        help="hardest level (operations per problem)")
    for role, size in DEFAULT_SIZES.items():  # formerly --seed etc.; elsewhere --seed is a random seed
        add_renamed(parser, f"--{role}-problems", old=f"--{role}", type=positive_int, default=size, metavar="N",
                    help=f"{role} problems per level")
    parser.add_argument("--gsm8k", type=input_file, metavar="FILE",
                        help="also copy the first --gsm8k-limit rows of this GSM8K test file to DIR/gsm8k_test.jsonl "
                        "(the evaluation's GSM8K slice)")
    parser.add_argument("--gsm8k-limit", type=positive_int, default=8, metavar="N", help="rows of --gsm8k to copy")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sizes = {role: getattr(args, f"{role}_problems") for role in DEFAULT_SIZES}
    for role, path in write_problem_sets(args.output, sizes, args.levels).items():
        print(f"{role}: {sizes[role] * args.levels} problems -> {path}")
    if args.gsm8k:
        try:
            rows = list(itertools.islice(read_jsonl(args.gsm8k, require=("id", "problem", "answer")), args.gsm8k_limit))
        except (OSError, ValueError) as exc:
            parser.error(f"--gsm8k {args.gsm8k}: {exc}")
        path = Path(args.output) / "gsm8k_test.jsonl"
        write_jsonl(path, rows)
        print(f"gsm8k: {len(rows)} problems -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
