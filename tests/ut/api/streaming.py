"""Assembling what a streaming client sees, and the chunkings the parser tests stream in."""
from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Assembled:
    content: str = ""
    reasoning: str = ""
    calls: dict[int, dict] = field(default_factory=dict)  # index -> {"name", "arguments"}

    def tool_calls(self) -> list[tuple[str, dict]]:
        return [(c["name"], json.loads(c["arguments"])) for _, c in sorted(self.calls.items())]


def chunkings(n_tokens: int) -> dict[str, list[int]]:
    """Token counts per streamed delta: one token at a time, MTP-like bursts, and everything at once."""
    return {"single": [1] * n_tokens, "burst3": [3] * (n_tokens // 3 + 1), "burst8": [8] * (n_tokens // 8 + 1),
            "whole": [n_tokens]}
