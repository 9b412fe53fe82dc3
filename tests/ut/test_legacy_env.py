"""Variables carried over from the forks our users come from get a one-line answer, at start-up and in
`vllm-sm7x doctor`, instead of silence (USERS.md: 1Cat-vLLM's scripts set them)."""
from vllm_sm7x import activation, doctor
from vllm_sm7x.activation import Gpu, decide
from vllm_sm7x.legacy_env import LEGACY_VARIABLES, legacy_notes

V100 = Gpu(0, "Tesla V100-SXM2-32GB", (7, 0))


def test_each_variable_set_gets_a_note_naming_it():
    assert legacy_notes({}) == []
    notes = legacy_notes({"VLLM_SM70_ENABLE_DENSE_F16_FASTPATH": "1", "VLLM_FLASH_V100_ENABLE_PAGED_PREFILL": "0",
                          "UNRELATED": "1"})
    assert [note.split()[0] for note in notes] == list(LEGACY_VARIABLES)
    assert all("not read by vllm-sm7x" in note and "nothing to turn on" in note for note in notes)


def test_start_up_warns_about_them_once_when_the_platform_is_active(monkeypatch, caplog):
    monkeypatch.delenv(activation._LOGGED_MARKER, raising=False)
    monkeypatch.setenv("VLLM_FLASH_V100_ENABLE_PAGED_PREFILL", "1")
    monkeypatch.delenv("VLLM_SM70_ENABLE_DENSE_F16_FASTPATH", raising=False)
    with caplog.at_level("INFO", logger="vllm.sm7x"):
        activation.log_activation_once(decide([V100], emulate=None))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "VLLM_FLASH_V100_ENABLE_PAGED_PREFILL is set" in warnings[0]


def test_doctor_lists_them(monkeypatch):
    monkeypatch.setenv("VLLM_SM70_ENABLE_DENSE_F16_FASTPATH", "1")
    check = doctor.check_legacy_env(doctor.Context(gpus=[]))
    assert check.status == "info" and "VLLM_SM70_ENABLE_DENSE_F16_FASTPATH is set" in check.detail
    monkeypatch.delenv("VLLM_SM70_ENABLE_DENSE_F16_FASTPATH")
    monkeypatch.delenv("VLLM_FLASH_V100_ENABLE_PAGED_PREFILL", raising=False)
    assert doctor.check_legacy_env(doctor.Context(gpus=[])).detail == "none set"
