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


def _readme_test_command() -> str:
    """The README's test command: its first bash block that runs pytest."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    return [b for b in blocks if "pytest" in b][0].strip()


def _readme_torch_pin() -> str:
    """The torch version the README's test command installs (`pip install torch==X.Y.Z`)."""
    pins = re.findall(r"pip install torch==([0-9][0-9.]*[0-9])(?=\s|$)", _readme_test_command())
    assert len(pins) == 1, f"the README's test command should pin torch once, pins {pins}"
    return pins[0]


def test_torch_pin_satisfies_the_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = [r for r in project["dependencies"] if _name(r) == "torch"][0]
    low = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", torch_req).group(1).split("."))
    assert tuple(int(x) for x in _readme_torch_pin().split(".")) >= low


def test_ci_runs_the_readme_test_command():
    test_cmd, pin = _readme_test_command(), _readme_torch_pin()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
    assert test_cmd.index(f"torch=={pin}") < test_cmd.index("-e")  # a CPU wheel, then ours
    readme = (ROOT / "README.md").read_text()
    assert set(re.findall(r"torch==([0-9][0-9.]*[0-9])", readme)) == {pin}, (
        "every torch pin the README names is the test command's"
    )


def test_console_script_prints_commands():
    r = subprocess.run([sys.executable, "-m", "ddlm"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("train", "eval", "sample", "infill"):
        assert cmd in r.stdout
