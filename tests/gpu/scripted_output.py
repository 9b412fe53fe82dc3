"""A vLLM logits processor that makes a request emit a given token sequence: the request carries
`vllm_xargs={"scripted_output": [token ids]}`, or else the server-wide script in the environment
variable SCRIPTED_OUTPUT (JSON list; for endpoints without vllm_xargs, such as Anthropic's
/v1/messages). With it a random-weight test model produces exactly
the tool calls and reasoning a real model would, so the whole OpenAI/Anthropic path (parsers,
streaming, finish reasons) is exercised end to end. Loaded by the server with
`--logits-processors scripted_output:ScriptedOutput` (tests/gpu on PYTHONPATH)."""
from __future__ import annotations

import json
import os

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality


class ScriptedOutput(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.rows: dict[int, tuple[list[int], list[int]]] = {}  # batch row -> (script, live output ids)
        self.default = json.loads(os.environ.get("SCRIPTED_OUTPUT", "[]"))

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token wins

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, _, output_ids in batch_update.added:
            script = (params.extra_args or {}).get("scripted_output") or self.default
            if script:
                self.rows[index] = ([int(t) for t in script], output_ids)
            else:
                self.rows.pop(index, None)
        for source, target, direction in batch_update.moved:
            moving, displaced = self.rows.pop(source, None), self.rows.pop(target, None)
            if moving is not None:
                self.rows[target] = moving
            if direction == MoveDirectionality.SWAP and displaced is not None:
                self.rows[source] = displaced

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for index, (script, output_ids) in self.rows.items():
            step = len(output_ids)
            if step < len(script):
                logits[index] = float("-inf")
                logits[index, script[step]] = 0.0
        return logits
