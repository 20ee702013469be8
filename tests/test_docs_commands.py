"""The commands in README.md and docs/*.md, as written, still match the code.

Every shell command in a ```bash block that runs `run_pipeline.py` is parsed by the CLI's
own parser (an unknown or renamed flag, a wrong choice, a bad value fails) and its
`--config` and `--set` values are loaded and validated as the CLI does. Every
`python -m MODULE` command names a module that exists, and each of its `--flags` is one
that module declares. Commands with placeholders (`...`, `<version>`, `$VAR`, `PATH`)
are checked for their flags only. The cheap commands also run for real elsewhere:
--help, --list_configs and config errors (tests/test_cli.py), inference on a folder and
the console (tests/test_console.py, tests/test_serving_*), lineage (the e2e tests).
"""
import glob
import importlib.util
import os
import re
import shlex

import pytest

from pipeline import cli, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
PLACEHOLDER = re.compile(r"\.\.\.|<[a-z_]+>|\$|\bPATH\b|\bPROJECT\b|\bBUCKET\b|NNNN")


def bash_commands(path):
  """(file:line, command) of every command in the ```bash blocks, continuations joined."""
  commands, in_block, pending, start = [], False, "", 0
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if line.startswith("```"):
        in_block = line.strip() == "```bash"
        continue
      if not in_block or line.lstrip().startswith("#") or not line.strip():
        continue
      if not pending:
        start = number
      pending += line.rstrip("\n").rstrip("\\") + " "
      if not line.rstrip("\n").endswith("\\"):
        commands.append((f"{os.path.relpath(path, ROOT)}:{start}", pending.split(" #")[0].strip()))
        pending = ""
  return commands


ALL = [c for path in DOCS for c in bash_commands(path)]
PIPELINE = [c for c in ALL if "run_pipeline.py" in c[1]]
MODULES = [c for c in ALL if re.search(r"python -m [a-z_.]+", c[1])]


def test_the_docs_have_commands_to_check():
  assert len(PIPELINE) >= 10 and len(MODULES) >= 8


@pytest.mark.parametrize("where,command", PIPELINE, ids=[w for w, _ in PIPELINE])
def test_run_pipeline_commands_parse_and_their_configs_validate(where, command):
  tokens = shlex.split(command.replace("$COMMON", ""))
  argv = tokens[tokens.index(next(t for t in tokens if t.endswith("run_pipeline.py"))) + 1:]
  if PLACEHOLDER.search(command):
    argv = [a for a in argv if not PLACEHOLDER.search(a)]
    flags = [a.split("=")[0] for a in argv if a.startswith("--")]
    actions = cli.build_parser()._actions  # pylint: disable=protected-access
    known = {s for action in actions for s in action.option_strings}
    assert set(flags) <= known, f"{where}: unknown flags {set(flags) - known}"
    return
  if "--help" in argv:
    with pytest.raises(SystemExit) as exit_info:
      cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 0
    return
  args = cli.build_parser().parse_args(argv)  # SystemExit on a bad flag or value
  run.load_experiment_config(args)  # the --config and --set values, validated


def _declared_flags(module: str) -> set:
  spec = importlib.util.find_spec(module)
  assert spec is not None and spec.origin, f"no module {module}"
  with open(spec.origin) as f:
    source = f.read()
  return set(re.findall(r"add_argument\(\s*\"(--[a-z0-9_]+)\"", source)) | {"--verbose", "--help"}


@pytest.mark.parametrize("where,command", MODULES, ids=[w for w, _ in MODULES])
def test_python_m_commands_name_real_modules_and_flags(where, command):
  module = re.search(r"python -m ([a-z_.]+)", command).group(1)
  flags = {t.split("=")[0] for t in shlex.split(command) if t.startswith("--")}
  unknown = flags - _declared_flags(module)
  assert not unknown, f"{where}: {module} has no {sorted(unknown)}"
