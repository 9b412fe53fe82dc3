"""The Qwen3.5 hybrid with an MTP head, served through vLLM's OpenAI server the way a user starts it:
the serving profile on (its default), which turns MTP on because the checkpoint carries `mtp.*`
weights. Completions come back and the server's /metrics reports drafts accepted."""
import urllib.request

import pytest

pytestmark = pytest.mark.gpu
PORT = 18733
# The demo checkpoint's head is built to agree with the model part of the time (0.26 of drafts on the
# end-to-end prompts, vllm_sm7x/checkpoints); a verification that rejected every draft reads 0.
MIN_ACCEPTANCE = 0.05


def counter(metrics: str, name: str) -> float:
    """A Prometheus counter's value in /metrics text, summed over its label sets."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "))


@pytest.mark.parametrize("emulate", ["sm75", "sm70"])
def test_served_mtp_reports_accepted_drafts_on_metrics(emulate, tmp_path):
    pytest.importorskip("vllm")
    openai = pytest.importorskip("openai")
    from tests.gpu.server import demo_server

    log = tmp_path / "server.log"
    with demo_server(emulate, PORT, tmp_path / "cache", log, ["--max-num-seqs", "2"], preset="qwen35-tiny-mtp",
                     extra_env={"VLLM_SM7X_PROFILE": "auto"}):
        client = openai.OpenAI(base_url=f"http://localhost:{PORT}/v1", api_key="unused")
        for prompt in ("one two three four", "the quick brown fox jumps", "1 2 3 4 5 6 7"):
            # ignore_eos (vLLM's extra parameter): a random model's early end of text would leave nothing to draft.
            answer = client.completions.create(model="qwen35-tiny-mtp-awq", prompt=prompt, max_tokens=48,
                                               temperature=0, extra_body={"ignore_eos": True})
            assert answer.usage.completion_tokens == 48
        metrics = urllib.request.urlopen(f"http://localhost:{PORT}/metrics", timeout=10).read().decode()
    text = log.read_text()
    assert "vllm-sm7x profile for" in text and "method=mtp, num_speculative_tokens=3" in text
    drafted = counter(metrics, "vllm:spec_decode_num_draft_tokens_total")
    accepted = counter(metrics, "vllm:spec_decode_num_accepted_tokens_total")
    print(f"qwen35-tiny-mtp served on {emulate}: {accepted:.0f} of {drafted:.0f} draft tokens accepted")
    assert drafted > 0, "the server did not speculate: the profile did not turn MTP on"
    assert accepted >= MIN_ACCEPTANCE * drafted
