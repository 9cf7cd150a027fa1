"""Course integrity: one environment, clean notebooks, generated files match their source,
every assignment grades (solution full marks, blank zero), and the book builder works."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import vizlib
from vizlib import cli
from vizlib.course import book, grading

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for d in ("lectures", "solutions", "assignments") for p in (ROOT / d).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
CONDA_NAMES = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_side = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and _name(dep) not in {"python", "pip", "jupyterlab"}:
            name = CONDA_NAMES.get(_name(dep), _name(dep))
            conda_side[name] = name + dep.replace(" ", "")[len(_name(dep)):]
        elif isinstance(dep, dict):  # PyPI-only packages, installed by conda's pip
            for req in dep["pip"]:
                if not req.startswith("-e"):
                    conda_side[_name(req)] = req.replace(" ", "")
    assert conda_side == pip_side


def test_constraints_pin_torch_for_this_machine():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make course" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path.name}: clear outputs before committing (cell: {cell.source[:60]!r})"


def test_committed_notebooks_are_fixed_points_of_the_git_filter():
    # `make setup` installs nbstripout --keep-id as git's clean filter: a notebook it would change
    # would show as modified in every clone
    out = subprocess.run([sys.executable, "-m", "nbstripout", "--keep-id", "--dry-run", *map(str, NOTEBOOKS)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", out


def test_lectures_are_numbered_in_course_order():
    names = [p.name for p in book.lecture_paths(ROOT / "lectures")]
    numbers = [int(n[:2]) for n in names]
    assert numbers == sorted(numbers) and numbers[:2] == [1, 2]
    for path in book.lecture_paths(ROOT / "lectures"):
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "from vizlib import" in source  # notebooks import the library, never re-implement it
        assert "os.environ" not in source      # quick mode is read through vizlib.config


@pytest.mark.parametrize("assignment", grading.assignment_ids(ROOT))
def test_assignments_are_generated_from_solutions(assignment, tmp_path):
    fresh = grading.release(assignment, root=ROOT, dest=tmp_path / assignment)
    committed = ROOT / "assignments" / assignment
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    assert fresh_files == committed_files
    for rel in fresh_files:
        assert (fresh / rel).read_bytes() == (committed / rel).read_bytes(), \
            f"assignments/{assignment}/{rel} differs from its source: run `vizlib release`"


# assignment1's solution and blank are graded by nbgrader end to end in test_classroom's class of
# every kind ("correct" scores 22 of 22, "blank" 0); the mutation harness checks all four as well
@pytest.mark.parametrize("assignment", [a for a in grading.assignment_ids(ROOT) if a != "assignment1"])
def test_solution_gets_full_marks_and_blank_gets_zero(assignment):
    problems = grading.check(assignment, root=ROOT)
    assert problems == []


def test_cli_lists_commands():
    result = subprocess.run([sys.executable, "-m", "vizlib.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "vizlib book" in result.stdout
    listed = re.findall(r"^ {4}(\S+)", result.stdout.split("commands:")[1], flags=re.M)
    assert listed == list(cli.COMMANDS)


def test_the_command_tree_loads_only_the_command_it_runs():
    # `vizlib -h` and `vizlib --version` import neither torch nor nbgrader; a command's help not nbgrader
    probe = ("import sys\nfrom vizlib import cli\ntry:\n    cli.main({argv!r})\nexcept SystemExit:\n    pass\n"
             "print('LOADED', 'torch' in sys.modules, 'nbgrader' in sys.modules)")
    for argv, loaded in ((["--help"], "False False"), (["--version"], "False False"), ([], "False False"),
                         (["grade", "--help"], "False"), (["check-assignments", "--help"], "False")):
        out = subprocess.run([sys.executable, "-c", probe.format(argv=argv)], capture_output=True, text=True,
                             timeout=120).stdout
        assert out.strip().endswith(loaded) and "LOADED" in out, (argv, out)
    version = subprocess.run([sys.executable, "-m", "vizlib.cli", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"vizlib {vizlib.__version__}"


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith(f"usage: vizlib {command} ") and "-h, --help" in out


def test_an_unknown_command_is_refused_with_the_list(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bok"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'bok'" in err and "book" in err


def test_the_modules_entry_points_run_the_same_tree(capsys):
    from vizlib import offline
    from vizlib.course import classroom, colab, synthetic

    for main, command in ((book.main, "book"), (classroom.main, "grade"), (colab.main, "colab"),
                          (synthetic.main, "synthetic-class"), (offline.main, "shapesnet"),
                          (grading.main, "check-assignments")):
        with pytest.raises(SystemExit):
            main(["check", "--help"] if main is grading.main else ["--help"])
        assert capsys.readouterr().out.startswith(f"usage: vizlib {command} "), command
