"""The CLI: user mistakes are one line on stderr, exit code 2 and nothing written."""

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--dataset", "nope"], ["unknown dataset 'nope'", "digits_lt"]),
        (["--method", "magic"], ["unknown method 'magic'", "difficulty_net"]),
        (["--model", "vgg"], ["unknown model 'vgg'", "resnet32"]),
        (["--set", "method.lamda=1"], ["method.lamda"]),
        (["--set", "train.epochs=many"], ["train.epochs"]),
        (["--epochs", "x"], ["--epochs"]),
        (["--dataset", "cifar10_lt", "--data-dir", "/nonexistent/dir"],
         ["/nonexistent/dir", "dnet-tune data download cifar10"]),
    ],
)
def test_train_bad_input(cli, tmp_path, argv, needles, one_line_error):
    out = tmp_path / "run"
    code, _, err = cli("train", *argv, "--output", str(out))
    one_line_error(code, err, *needles)
    assert not out.exists()


def test_train_bad_config_file(cli, tmp_path, one_line_error):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dn: {hidden: [64, 64]}\nmodel: {nme: resnet32}\n")
    code, _, err = cli("train", "--config", str(cfg), "--output", str(tmp_path / "r"))
    one_line_error(code, err, "model.nme")
    code, _, err = cli("train", "--config", str(tmp_path / "missing.yaml"))
    one_line_error(code, err, "missing.yaml")


def test_train_smoke_and_refuses_to_overwrite(cli, tmp_path, one_line_error):
    out = tmp_path / "run"
    code, stdout, _ = cli("train", "--dataset", "digits_lt", "--method", "ce",
                              "--smoke", "--output", str(out))
    assert code == 0
    assert "selected epoch" in stdout and (out / "final.json").is_file()
    code, _, err = cli("train", "--dataset", "digits_lt", "--output", str(out))
    one_line_error(code, err, "--resume")
    code, _, _ = cli("train", "--output", str(out), "--resume", "--extend", "1")
    assert code == 0
    assert json.loads((out / "final.json").read_text())["last_epoch"] == 3


def test_data_describe_json(cli):
    code, out, _ = cli("data", "describe", "digits_lt", "--json")
    assert code == 0
    info = json.loads(out)
    for key in ("train", "meta", "val", "test", "many", "medium", "few"):
        assert key in info
    assert len(info["train"]) == 10
    assert info["train"][0] > info["train"][-1]
    assert len(set(info["val"])) == 1 and len(set(info["meta"])) == 1
    groups = info["many"] + info["medium"] + info["few"]
    assert sorted(groups) == list(range(10))


def test_data_list_shows_every_dataset(cli):
    from dnet_tune.data.registry import DATASETS

    code, out, _ = cli("data", "list")
    assert code == 0
    for name in DATASETS.names():
        assert name in out


def test_unknown_subcommand_is_one_line(cli, one_line_error):
    code, _, err = cli("frobnicate")
    one_line_error(code, err)


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for sub_name, subsub in _subparsers(sub):
                    yield f"{name} {sub_name}", subsub


def test_help_says_what_the_tool_does_and_the_workflow():
    from dnet_tune.cli import build_parser

    text = build_parser().format_help()
    assert "Difficulty-Net" in text and "long-tailed" in text
    for step in ("dnet-tune search", "dnet-tune export", "dnet-tune train --config"):
        assert step in text
    assert "render user errors" not in text  # the developers' docstring stays in the code


def test_every_flag_of_every_command_has_help():
    from dnet_tune.cli import build_parser

    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, sub in _subparsers(build_parser()) for a in sub._actions
               if not a.help and a.dest != "help" and not a.choices]
    assert not missing, missing


def test_a_diverging_run_is_a_failure_in_one_line(cli, tmp_path):
    code, _, err = cli("train", "--dataset", "digits_lt", "--method", "ce", "--smoke",
                       "--set", "optim.lr=1e8", "--output", str(tmp_path / "run"), "--quiet")
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnet-tune: error: the run diverged: ")
    assert "training loss became nan at epoch 1" in lines[0]


def test_building_the_parser_loads_neither_torch_nor_ray():
    """`dnet-tune --help` (and every parse) stays fast: the handlers import what they need."""
    import subprocess
    import sys

    code = ("import sys; from dnet_tune.cli import build_parser; "
            "build_parser().parse_args(['search']); "
            "print(sorted(m for m in ('torch', 'ray', 'optuna', 'pyarrow', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=README.parent).stdout.strip()
    assert out == "[]"


def test_search_flags_default_to_the_request_s_fields():
    """No default is restated: the flags left out give exactly SearchRequest()."""
    from dnet_tune.cli import build_parser
    from dnet_tune.commands.search import request
    from dnet_tune.tune.plan import SearchRequest

    parser = build_parser()
    assert request(parser.parse_args(["search"]), None) == SearchRequest()
    assert parser.parse_args(["report"]).storage == SearchRequest().storage
    given = parser.parse_args(["search", "--set", "a=1", "--no-confirm", "--max-failures", "0",
                               "--storage", "s3://b/x", "--warm-start", "2"])
    req = request(given, ["ce"])
    assert (req.sets, req.confirm, req.max_failures, req.storage, req.warm_start,
            req.methods) == (["a=1"], False, 0, "s3://b/x", 2, ["ce"])


def test_method_help_lists_the_registered_methods():
    from dnet_tune.cli import build_parser
    from dnet_tune.config import MethodConfig
    from dnet_tune.method.methods import METHODS

    subs = dict(_subparsers(build_parser()))
    train = " ".join(subs["train"].format_help().split())
    baselines = [m for m in METHODS.names() if m != MethodConfig().name]
    assert f"{MethodConfig().name} (default) or a baseline: {', '.join(baselines)}" in train
    search = " ".join(subs["search"].format_help().split())
    assert f"(default: {MethodConfig().name} and the space file's baselines)" in search


README = Path(__file__).resolve().parents[2] / "README.md"
# the README section that documents each command
SECTIONS = {"train": "### `dnet-tune train`", "data": "### `dnet-tune data`",
            "search": "### `dnet-tune search`", "report": "### `dnet-tune report` and `export`",
            "export": "### `dnet-tune report` and `export`", "cluster": "## Clusters"}


def readme_section(text: str, heading: str) -> str:
    """From `heading` to the next heading of its level or above (code blocks skipped)."""
    level = len(heading.split(" ", 1)[0])
    lines = text.splitlines()
    start = lines.index(heading)
    out, fenced = [], False
    for line in lines[start + 1:]:
        fenced ^= line.startswith("```")
        hashes = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < hashes <= level and line[hashes:hashes + 1] == " ":
            break
        out.append(line)
    return "\n".join(out)


def test_readme_section_ends_at_the_next_heading_of_its_level():
    text = "## A\na\n### B\n```\n## not a heading\n```\nb\n#### C\nc\n### D\nd\n"
    assert readme_section(text, "### B") == "```\n## not a heading\n```\nb\n#### C\nc"
    assert readme_section(text, "## A") == "a\n### B\n```\n## not a heading\n```\nb\n#### C\n" \
                                           "c\n### D\nd"


def test_the_readme_documents_every_flag_of_every_command():
    import re

    from dnet_tune.cli import COMMANDS, build_parser

    assert set(SECTIONS) == set(COMMANDS)
    text = README.read_text()
    missing = []
    for path, sub in _subparsers(build_parser()):
        section = readme_section(text, SECTIONS[path.split()[0]])
        if " " in path and f"dnet-tune {path}" not in section:
            missing.append(f"dnet-tune {path}")
        for action in sub._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help"):
                    continue
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", section):
                    missing.append(f"{path} {flag}")
    assert not missing, missing
