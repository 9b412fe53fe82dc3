"""Generated docs stay in step with their sources."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_environment_doc_is_current():
    spec = importlib.util.spec_from_file_location("gen_env_docs", ROOT / "tools" / "gen_env_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "environment.md").read_text() == module.render(), "run tools/gen_env_docs.py"
