"""The prompt vocabulary every other module speaks: the three reasoning efforts, their system prompts
(the paper's Figure 7, the one source of their text) and the chat messages built from them.

The bottom floor of the package: it imports nothing of ours.
"""

from __future__ import annotations

EFFORTS: tuple[str, ...] = ("low", "medium", "high")

EFFORT_PROMPTS: dict[str, str] = {
    "low": (
        "Low Reasoning Effort: You have extremely limited time to think and respond to the user’s query. "
        "Every additional second of processing and reasoning incurs a significant resource cost, which could "
        "affect efficiency and effectiveness. Your task is to prioritize speed without sacrificing essential "
        "clarity or accuracy. Provide the most direct and concise answer possible. Avoid unnecessary steps, "
        "reflections, verification, or refinements UNLESS ABSOLUTELY NECESSARY. Your primary goal is to "
        "deliver a quick, clear and correct response."
    ),
    "medium": (
        "Medium Reasoning Effort: You have sufficient time to think and respond to the user’s query, allowing "
        "for a more thoughtful and in-depth answer. However, be aware that the longer you take to reason and "
        "process, the greater the associated resource costs and potential consequences. While you should not "
        "rush, aim to balance the depth of your reasoning with efficiency. Prioritize providing a "
        "well-thought-out response, but do not overextend your thinking if the answer can be provided with a "
        "reasonable level of analysis. Use your reasoning time wisely, focusing on what is essential for "
        "delivering an accurate response without unnecessary delays and overthinking."
    ),
    "high": (
        "High Reasoning Effort: You have unlimited time to think and respond to the user’s question. There is "
        "no need to worry about reasoning time or associated costs. Your only goal is to arrive at a reliable, "
        "correct final answer. Feel free to explore the problem from multiple angles, and try various methods "
        "in your reasoning. This includes reflecting on reasoning by trying different approaches, verifying "
        "steps from different aspects, and rethinking your conclusions as needed. You are encouraged to take "
        "the time to analyze the problem thoroughly, reflect on your reasoning promptly and test all possible "
        "solutions. Only after a deep, comprehensive thought process should you provide the final answer, "
        "ensuring it is correct and well-supported by your reasoning."
    ),
}

#: The instruction appended to every problem (the paper's evaluation prompt).
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

#: The label of responses made without an effort system prompt (results keys, tables).
DEFAULT_EFFORT = "default"


def effort_label(effort: object) -> str:
    """The name an effort is reported under: the effort itself, or `DEFAULT_EFFORT` for none."""
    return DEFAULT_EFFORT if effort is None else str(effort)


def effort_sort_key(label: str) -> tuple[int, str]:
    """Orders effort labels default (no effort prompt, the baseline), low, medium, high, then any other
    label alphabetically."""
    order = (DEFAULT_EFFORT, *EFFORTS)
    return (order.index(label), "") if label in order else (len(order), label)


def build_messages(problem_text: str, effort: str | None) -> list[dict]:
    """Chat messages for one problem: the effort system prompt (if any), then the problem and the
    instruction to box the final answer. Rendered later with each model's own chat template."""
    messages: list[dict] = []
    if effort is not None:
        messages.append({"role": "system", "content": EFFORT_PROMPTS[effort]})
    messages.append({"role": "user", "content": f"{problem_text.strip()}\n\n{BOXED_INSTRUCTION}"})
    return messages
