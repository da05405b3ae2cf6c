"""The CLI: user mistakes are one line on stderr, exit code 2 and nothing written."""

import json

import pytest

from dnet_tune.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dnet-tune: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0]


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
def test_train_bad_input(capsys, tmp_path, argv, needles):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *argv, "--output", str(out))
    assert_one_line_error(code, err, *needles)
    assert not out.exists()


def test_train_bad_config_file(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dn: {hidden: [64, 64]}\nmodel: {nme: resnet32}\n")
    code, _, err = run_cli(capsys, "train", "--config", str(cfg), "--output", str(tmp_path / "r"))
    assert_one_line_error(code, err, "model.nme")
    code, _, err = run_cli(capsys, "train", "--config", str(tmp_path / "missing.yaml"))
    assert_one_line_error(code, err, "missing.yaml")


def test_train_smoke_and_refuses_to_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--dataset", "digits_lt", "--method", "ce",
                              "--smoke", "--output", str(out))
    assert code == 0
    assert "selected epoch" in stdout and (out / "final.json").is_file()
    code, _, err = run_cli(capsys, "train", "--dataset", "digits_lt", "--output", str(out))
    assert_one_line_error(code, err, "--resume")
    code, _, _ = run_cli(capsys, "train", "--output", str(out), "--resume", "--epochs", "3")
    assert code == 0
    assert json.loads((out / "final.json").read_text())["last_epoch"] == 3


def test_data_describe_json(capsys):
    code, out, _ = run_cli(capsys, "data", "describe", "digits_lt", "--json")
    assert code == 0
    info = json.loads(out)
    for key in ("train", "meta", "val", "test", "many", "medium", "few"):
        assert key in info
    assert len(info["train"]) == 10
    assert info["train"][0] > info["train"][-1]
    assert len(set(info["val"])) == 1 and len(set(info["meta"])) == 1
    groups = info["many"] + info["medium"] + info["few"]
    assert sorted(groups) == list(range(10))


def test_data_list_shows_every_dataset(capsys):
    from dnet_tune.data.registry import DATASETS

    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0
    for name in DATASETS.names():
        assert name in out


def test_unknown_subcommand_is_one_line(capsys):
    code, _, err = run_cli(capsys, "frobnicate")
    assert_one_line_error(code, err)
