"""The package's shape: no import cycles, a small lazy public API, strict recipes, flags derived
from config fields and offered only where they are used."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import vpgtrans
from vpgtrans.cli.main import build_parser, main
from vpgtrans.errors import VPGTransError
from vpgtrans.presets import ModelPreset, read_tables, resources_root
from vpgtrans.recipes import Recipe, parse_recipe, transfer_recipes
from vpgtrans.training.stages import TrainingConfig
from vpgtrans.world.zoo import load_zoo_config

PACKAGE = Path(vpgtrans.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The vpgtrans modules `path` imports, at any depth (lazy imports inside functions too)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("vpgtrans")}
    return found


def test_no_import_cycles():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "_resources" not in p.parts}
    graph = {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}  # a parent package
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(dep) :], dep]))
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) > 20  # the walk saw the package


def test_public_api_is_small_and_lazy():
    assert set(vpgtrans.__all__) == {
        "transfer", "TransferConfig", "TrainingConfig", "fit_converter", "ConverterFitConfig", "WordConverter",
        "graft", "evaluate", "EvalConfig", "Benchmark", "compare", "CompareConfig", "VPGTransError",
    }  # fmt: skip
    for name in vpgtrans.__all__:
        assert callable(getattr(vpgtrans, name)), name
    with pytest.raises(AttributeError):
        vpgtrans.run_transfer  # noqa: B018  (not public)
    code = "import sys, vpgtrans; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_every_recipe_key_is_a_config_field():
    """Every key of recipes/*.toml lands in a typed field: parsing is strict, so this is also
    the check that no recipe key is silently dropped."""
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)} | {f.name for f in dataclasses.fields(TrainingConfig)}
    model_fields = {f.name for f in dataclasses.fields(ModelPreset)}
    for path in sorted((resources_root() / "recipes").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        for name, body in data.get("transfers", {}).items():
            assert set(body) <= recipe_fields, (path, name, set(body) - recipe_fields)
        for name, body in data.get("models", {}).items():
            assert set(body) <= model_fields, (path, name, set(body) - model_fields)
    load_zoo_config(resources_root() / "recipes" / "toy" / "zoo.toml")  # strict, like the transfers
    recipes = transfer_recipes()
    assert {"default", "toy-tas", "toy-tat", "opt-2.7b-to-6.7b", "opt-2.7b-to-llama-7b"} <= set(recipes)
    assert recipes["toy-tat"].training_config().stage1_epochs == 2.0
    assert recipes["opt-2.7b-to-6.7b"].training_config().precision == "fp16"


@pytest.mark.parametrize(
    "body, message",
    [
        ({"src": "a", "stage1_epoch": 2}, r"unknown key\(s\) 'stage1_epoch'"),
        ({"batch_size": "16"}, "batch_size must be int, not '16'"),
        ({"lr": -1.0}, "lr must be at least"),
        ({"precision": "fp8"}, "precision 'fp8' is not one of fp32, bf16, fp16"),
        ({"world_images": 0}, "world_images must be at least 1"),
    ],
)
def test_a_bad_recipe_names_its_file_and_key(body, message):
    with pytest.raises(VPGTransError, match=f"recipes.toml \\[transfers.x\\]: {message}"):
        parse_recipe("x", body, "recipes.toml [transfers.x]")


def test_a_typo_in_a_recipe_file_is_refused_by_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VPGTRANS_HOME", str(tmp_path))
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "transfers.toml").write_text('[transfers.default]\nsrc = "a"\nstage1_epoch = 2.0\n')
    read_tables.cache_clear()
    try:
        assert main(["transfer"]) == 2
    finally:
        read_tables.cache_clear()
    err = capsys.readouterr().err
    assert f"{tmp_path / 'recipes' / 'transfers.toml'} [transfers.default]: unknown key(s) 'stage1_epoch'" in err


def _flags(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {opt for action in sub._actions for opt in action.option_strings if opt.startswith("--")}


def test_each_command_offers_only_the_flags_it_uses():
    compare, transfer = _flags("compare"), _flags("transfer")
    assert not {"--skip-bad-samples", "--checkpoint-every", "--stage2-epochs", "--stage2-steps", "--seed"} & compare
    assert {"--skip-bad-samples", "--checkpoint-every", "--stage2-epochs", "--seed", "--eval-limit"} <= transfer
    assert not {"--stage2-steps", "--stage2-epochs", "--stage2-optimizer"} & _flags("warmup")
    assert not {"--stage1-steps", "--warmup-lr-mult", "--stage1-optimizer"} & _flags("finetune")
    training = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainingConfig)}
    assert training <= transfer  # every training field is a transfer flag, none written by hand


def test_help_shows_the_dataclass_defaults():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["transfer"]
    helps = {action.dest: action.help for action in sub._actions}
    for field in dataclasses.fields(TrainingConfig):
        assert helps[field.name].startswith(field.metadata["help"]), field.name
        if field.default is not None and not isinstance(field.default, bool):  # a switch: --x / --no-x
            shown = f"{field.default:g}" if isinstance(field.default, float) else field.default
            shown = ",".join(field.default) if isinstance(field.default, tuple) else shown
            assert helps[field.name].endswith(f"(default: {shown})"), field.name


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "nan"], "--lr: lr must be a finite number"),
        (["--batch-size", "0"], "--batch-size: batch_size must be at least 1"),
        (["--stage1-steps", "0"], "--stage1-steps: stage1_steps must be at least 1"),
        (["--grad-accum", "-2"], "--grad-accum: grad_accum must be at least 1"),
        (["--num-workers", "-1"], "--num-workers: num_workers must be at least 0"),
        (["--lr", "-1"], "--lr: lr must be at least 1e-12"),
        (["--stage1-epochs", "nan"], "--stage1-epochs: stage1_epochs must be a finite number"),
        (["--stage2-steps", "-3"], "--stage2-steps: stage2_steps must be at least 1"),
        (["--max-text-tokens", "0"], "--max-text-tokens: max_text_tokens must be at least 2"),
        (["--checkpoint-every", "0"], "--checkpoint-every: checkpoint_every must be at least 1"),
    ],
)
def test_numeric_flags_are_checked_before_anything_runs(flags, message, tmp_path, capsys):
    assert main(["transfer", "--out", str(tmp_path / "run"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_docs_flag_reference_is_current():
    """docs/commands.md carries the parser's own reference: regenerate it with
    `python -m vpgtrans.cli.reference` after changing a config field."""
    from vpgtrans.cli.reference import BEGIN, END, flag_reference

    text = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text()
    assert text[text.index(BEGIN) : text.index(END) + len(END)] == flag_reference()


def test_parsing_arguments_imports_no_torch():
    """`vpgtrans --help` and argument errors stay instant: the configs the flags come from are torch-free."""
    code = "import sys; from vpgtrans.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
