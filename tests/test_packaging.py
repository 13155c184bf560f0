"""The project's own files agree with each other."""

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = (ROOT / "environment.yml").read_text()
    listed = {
        _name(m) for m in re.findall(r"^\s*-\s+([A-Za-z][\w.-]*(?:[<>=][^\s#]*)?)\s*$", env, re.M)
    }
    listed = {"torch" if n == "pytorch" else n for n in listed}
    assert wanted <= listed, f"environment.yml lacks {sorted(wanted - listed)}"
    assert "-e .[dev]" in env


def test_torch_pin_satisfies_the_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = [r for r in project["dependencies"] if _name(r) == "torch"][0]
    low = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", torch_req).group(1).split("."))
    assert (2, 13, 0) >= low


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_cmd = [b for b in blocks if "pytest" in b][0].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
    assert test_cmd.index("torch==2.13.0") < test_cmd.index("-e")


def test_console_script_prints_commands():
    r = subprocess.run([sys.executable, "-m", "ddlm"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("train", "eval", "sample", "infill"):
        assert cmd in r.stdout
