"""The config loader: the seed's values, validation errors, flags over the file."""
from __future__ import annotations

import argparse

import pytest
import yaml

from conftest import ROOT
from core.config import FIELDS, Config, add_config_arguments, config_overrides, load_config, save_config
from core.errors import UserError

CONFIGS = ROOT / "configs"


def parse(argv, config_required=False):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, config_required=config_required)
    return parser.parse_args(argv)


def test_seed_configs_hold_the_seeds_values():
    # values from docs/algorithms.md §3-4 (the seed's configs)
    glow = load_config(CONFIGS / "melspec_glow.yml")
    assert (glow.L, glow.K, glow.n_filters, glow.learntop) == (3, 40, 512, True)
    assert (glow.optimizer, glow.batch_size, glow.learning_rate, glow.n_epochs) == ("adamax", 32, 1e-3, 500)
    assert (glow.height, glow.width, glow.scale, glow.use_logit, glow.alpha) == (96, 64, "dB", False, None)

    v1 = load_config(CONFIGS / "melspec_ncsnv1.yml")
    assert (v1.version, v1.n_filters, v1.sigma1, v1.sigmaL, v1.num_classes) == ("v1", 192, 1.0, 0.01, 10)
    assert (v1.T, v1.step_lr, v1.learning_rate, v1.batch_size, v1.n_epochs) == (100, 2e-5, 1e-3, 32, 400)

    v2 = load_config(CONFIGS / "melspec_ncsnv2.yml")
    assert (v2.version, v2.n_filters, v2.sigma1, v2.num_classes, v2.T) == ("v2", 128, 30.0, 200, 8)
    assert (v2.step_lr, v2.learning_rate, v2.n_epochs) == (7e-6, 6e-5, 200)

    noisy = load_config(CONFIGS / "melspec_noisy_glow.yml")
    assert (noisy.sigma1, noisy.sigmaL, noisy.num_classes, noisy.progression) == (1.0, 0.01, 10, "logarithmic")
    assert (noisy.n_epochs, noisy.L, noisy.K) == (20, 3, 40)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert isinstance(load_config(path), Config)


def write(tmp_path, text):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_unknown_key_names_key_file_and_accepted_keys(tmp_path):
    path = write(tmp_path, "n_filters: 8\nnum_filter: 3\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    message = str(err.value)
    assert "num_filter" in message and str(path) in message and "n_filters" in message and "\n" not in message


@pytest.mark.parametrize("text, key", [
    ("n_filters: 8.5\n", "n_filters"),
    ("batch_size: '32'\n", "batch_size"),
    ("use_logit: 1\n", "use_logit"),
    ("ema: yes_please\n", "ema"),
    ("learning_rate: fast\n", "learning_rate"),
    ("scale: amplitude\n", "scale"),
    ("optimizer: sgd\n", "optimizer"),
])
def test_wrong_type_or_choice_names_the_key(tmp_path, text, key):
    with pytest.raises(UserError, match=f"'{key}'"):
        load_config(write(tmp_path, text))


def test_missing_required_key(tmp_path):
    with pytest.raises(UserError, match="missing required key 'n_filters'"):
        load_config(write(tmp_path, "L: 2\n"), required=("n_filters",))


def test_yaml_problems_are_one_line(tmp_path):
    with pytest.raises(UserError, match=r"not valid YAML at line \d"):
        load_config(write(tmp_path, "L: 2\nK: [1, 2\n"))
    with pytest.raises(UserError, match="mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yml")


def test_scientific_notation_without_dot_is_a_float(tmp_path):
    assert load_config(write(tmp_path, "learning_rate: 1e-4\n")).learning_rate == pytest.approx(1e-4)


def test_flags_override_the_file_and_only_when_given(tmp_path):
    path = write(tmp_path, "n_filters: 192\nT: 100\nlearning_rate: 0.001\nema: false\n")
    args = parse(["--config", str(path), "--n_filters", "64", "--T", "5", "--ema", "true",
                  "--learning_rate", "3e-4"])
    overrides = config_overrides(args)
    assert overrides == {"n_filters": 64, "T": 5, "ema": True, "learning_rate": 3e-4}
    config = load_config(args.config, overrides)
    assert (config.n_filters, config.T, config.ema, config.learning_rate) == (64, 5, True, 3e-4)
    untouched = load_config(path, config_overrides(parse(["--config", str(path)])))
    assert (untouched.n_filters, untouched.T) == (192, 100)


def test_every_key_is_a_flag():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = {action.dest for action in parser._actions}
    assert set(FIELDS) <= flags


def test_bad_flag_value_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["--n_filters", "many"])
    assert exit_info.value.code == 2
    assert "n_filters" in capsys.readouterr().err


def test_saved_config_round_trips(tmp_path):
    config = load_config(CONFIGS / "melspec_ncsnv2.yml", {"T": 3})
    save_config(config, tmp_path / "run" / "config.yml")
    assert yaml.safe_load((tmp_path / "run" / "config.yml").read_text())["T"] == 3
    assert load_config(tmp_path / "run" / "config.yml") == config


def test_inconsistent_values(tmp_path):
    with pytest.raises(UserError, match="alpha"):
        load_config(write(tmp_path, "use_logit: true\n"))
    with pytest.raises(UserError, match="sigmaL < sigma1"):
        load_config(write(tmp_path, "sigma1: 0.01\nsigmaL: 0.1\n"))
    with pytest.raises(UserError, match="batch_size"):
        load_config(write(tmp_path, "batch_size: 0\n"))


def test_sampler_keys_default_to_the_original_basis_and_refuse_what_cannot_work():
    config = load_config(None)
    assert (config.start_level, config.basis_levels, config.init, config.n_chains, config.temperature,
            config.denoise, config.consistency) == (0, None, "uniform", 1, 1.0, False, "none")
    assert load_config(None, {"start_level": 3, "init": "mixture", "basis_levels": 7}).basis_levels == 7
    for overrides, message in (({"start_level": 3}, "use init: mixture"),
                               ({"start_level": 10}, "'start_level' must be in 0..9"),
                               ({"start_level": 3, "init": "mixture", "basis_levels": 8}, "must be in 1..7"),
                               ({"n_chains": 0}, "'n_chains' must be at least 1"),
                               ({"temperature": -0.5}, "'temperature' must be at least 0"),
                               ({"consistency": "always"}, "must be one of none, final, step")):
        with pytest.raises(UserError, match=message):
            load_config(None, overrides)
