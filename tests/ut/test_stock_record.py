"""The key of a recorded stock vLLM run (tests/gpu/stock_record.py) names exactly what decided it."""
from tests.gpu.stock_record import STOCK_RUNS, files_digest, recorded_stock_run, stock_run_key, write_atomically

SETTINGS = ["NVIDIA H200", "0.26.0", "script", [[1, 2, 3]], {"max_num_seqs": 8}, ""]


def checkpoint(folder, weights=b"\x00\x01" * 1000, config='{"hidden_size": 64}'):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text(config)
    (folder / "generation_config.json").write_text('{"eos_token_id": [2]}')
    (folder / "tokenizer.json").write_text("{}")
    (folder / "checkpoint_info.json").write_text('{"preset": "qwen3-tiny"}')
    return folder


def test_the_same_checkpoint_and_settings_name_the_same_run(tmp_path):
    first, second = checkpoint(tmp_path / "a"), checkpoint(tmp_path / "b")
    assert stock_run_key(first, SETTINGS) == stock_run_key(second, SETTINGS)
    (second / "tokenizer.json").write_text('{"other": 1}')  # not read by the engine's greedy ids
    (second / "checkpoint_info.json").write_text('{"median_top1_top2_logprob_gap": 1.5}')  # notes for people
    assert stock_run_key(first, SETTINGS) == stock_run_key(second, SETTINGS)


def test_one_weight_byte_names_another_run(tmp_path):
    base = checkpoint(tmp_path / "a")
    changed = checkpoint(tmp_path / "b", weights=b"\x00\x01" * 999 + b"\x00\x02")
    assert stock_run_key(base, SETTINGS) != stock_run_key(changed, SETTINGS)


def test_any_file_the_engine_reads_names_another_run(tmp_path):
    base = checkpoint(tmp_path / "a")
    other = checkpoint(tmp_path / "b")
    (other / "generation_config.json").write_text('{"eos_token_id": [3]}')
    assert stock_run_key(base, SETTINGS) != stock_run_key(other, SETTINGS)
    (other / "generation_config.json").write_text('{"eos_token_id": [2]}')
    (other / "quant_config.json").write_text("{}")  # a file the first checkpoint lacks
    assert stock_run_key(base, SETTINGS) != stock_run_key(other, SETTINGS)


def test_binaries_are_told_apart_by_their_bytes(tmp_path):
    (tmp_path / "_C.so").write_bytes(b"\x7fELF" + b"\x00" * 64)
    before = files_digest(tmp_path.glob("*.so"))
    (tmp_path / "_C.so").write_bytes(b"\x7fELF" + b"\x00" * 63 + b"\x01")
    assert files_digest(tmp_path.glob("*.so")) != before


def test_a_record_is_whole_or_absent(tmp_path):
    target = tmp_path / "out" / "run.json"
    write_atomically(target, '{"samples": []}')
    write_atomically(target, '{"samples": [1]}')  # a second writer of the same run
    assert target.read_text() == '{"samples": [1]}' and [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_a_record_is_found_by_its_key_whatever_folder_made_it(tmp_path):
    key = "0123456789abcdef"
    assert recorded_stock_run(key, tmp_path) is None
    (tmp_path / f"qwen3-tiny-awq0-stock-run-{key}.json").write_text("{}")  # a pytest tmp folder's name
    assert recorded_stock_run(key, tmp_path).name.endswith(f"-stock-run-{key}.json")
    assert recorded_stock_run("fedcba9876543210", tmp_path) is None


def test_the_config_and_every_setting_name_another_run(tmp_path):
    base = checkpoint(tmp_path / "a")
    assert stock_run_key(base, SETTINGS) != stock_run_key(checkpoint(tmp_path / "b", config='{"hidden_size": 65}'),
                                                           SETTINGS)
    for i in range(len(SETTINGS)):
        other = list(SETTINGS)
        other[i] = "changed"
        assert stock_run_key(base, other) != stock_run_key(base, SETTINGS), i


def test_recorded_runs_are_named_by_their_key():
    for path in STOCK_RUNS.glob("*.json"):
        checkpoint_name, separator, key = path.stem.rpartition("-stock-run-")
        assert separator and checkpoint_name, f"{path.name}: not <checkpoint>-stock-run-<key>.json"
        assert len(key) == 16 and int(key, 16) >= 0, path.name
