"""Config validation: defaults, --set overrides, and errors that name the key path."""
import pytest

from rayfit.config import Experiment, apply_override, auto_batch_size, auto_epochs, load_experiment, to_yaml, validate
from rayfit.errors import UserError


def test_defaults_are_the_quickstart():
    exp = load_experiment()
    assert exp.name == "quickstart" and exp.data.source == "synthetic"
    assert exp.torch.workers == 2 and exp.keras.workers == 2
    assert exp.tune.num_samples >= 8 and exp.tune.scheduler == "asha"
    assert set(exp.tune.space) == {"lr", "hidden_sizes", "dropout", "batch_size"}


def test_a_run_saved_before_a_key_existed_is_read_with_the_value_it_used(tmp_path):
    """resume and report read a run's config.yaml as the run did: a key added since takes the value
    every run used before it (SAVED_BEFORE_THE_KEY), not today's default."""
    import yaml

    from rayfit.config import SAVED_BEFORE_THE_KEY, load_saved_experiment

    assert load_experiment().data.numeric_scaling == "auto"
    saved = yaml.safe_load(to_yaml(load_experiment()))
    (tmp_path / "now.yaml").write_text(yaml.safe_dump(saved))
    assert load_saved_experiment(tmp_path / "now.yaml").data.numeric_scaling == "auto"  # saved: kept as saved
    del saved["data"]["numeric_scaling"]
    (tmp_path / "before.yaml").write_text(yaml.safe_dump(saved))
    old = load_saved_experiment(tmp_path / "before.yaml", [("seed", 4)])
    assert old.data.numeric_scaling == SAVED_BEFORE_THE_KEY["data.numeric_scaling"] == "standard" and old.seed == 4


def test_set_overrides_parse_values_as_yaml():
    exp = load_experiment(overrides=("torch.epochs=7", "torch.hidden_sizes=[16, 8]", "tune.enabled=false",
                                     "data.split.train=0.6", "data.split.val=0.2", "data.split.test=0.2"))
    assert exp.torch.epochs == 7 and exp.torch.hidden_sizes == [16, 8]
    assert exp.tune.enabled is False
    assert exp.data.split.train == pytest.approx(0.6)


def test_data_and_target_flags_name_the_run(tmp_path):
    exp = load_experiment(data=str(tmp_path / "sales.csv"), target="y")
    assert exp.name == "sales" and exp.data.target == "y"


def test_resolved_config_round_trips():
    exp = load_experiment(overrides=("seed=3",))
    import yaml

    assert validate(yaml.safe_load(to_yaml(exp))) == exp


@pytest.mark.parametrize("raw, fragment", [
    ({"torch": {"epoch": 3}}, "torch.epoch: unknown key (valid keys: enabled, model"),
    ({"bogus": 1}, "bogus: unknown key (valid keys: name, seed, data"),
    ({"torch": {"epochs": "many"}}, "torch.epochs: must be auto or a whole number of at least 1 (got 'many')"),
    ({"torch": {"dropout": 1.5}}, "torch.dropout: Input should be less than 1"),
    ({"data": {"split": {"train": 0.8, "val": 0.15, "test": 0.15}}}, "data.split: train + val + test must be 1.0"),
    ({"data": {"task": "ranking"}}, "data.task: Input should be 'auto', 'classification', 'regression' or 'clustering'"),
    ({"baselines": {"models": ["svn"]}}, "unknown baseline 'svn'; choose from dummy, linear"),
    ({"tune": {"space": {"lr": {"loguniform": [0, 1]}}}}, "loguniform bounds must be positive"),
    ({"tune": {"space": {"lr": {"uniform": [1, 0.1]}}}}, "bounds must be ordered"),
    ({"tune": {"space": {"workers": {"choice": [1, 2]}}}}, "cannot tune 'workers'"),
    ({"keras": {"model": "gru"}}, "keras.model: 'gru' is not a keras network; choose from mlp, cnn, rnn, transformer"),
    ({"torch": {"model": "mlp", "cnn": {"channels": [8]}}}, "torch: cnn: set, but no network here is a cnn (model: mlp)"),
    ({"keras": {"optimizer": "adam", "momentum": 0.5}}, "keras: momentum: adam has none (sgd and rmsprop do)"),
    ({"torch": {"transformer": {"d_model": 30, "heads": 4}}}, "d_model (30) must be divisible by heads (4)"),
    ({"tune": {"grace_period": 30, "max_t": 10}}, "grace_period (30) must not exceed max_t (10)"),
    ({"torch": {"hidden_sizes": []}}, "non-empty list of positive layer widths"),
])
def test_invalid_configs_name_the_key(raw, fragment):
    with pytest.raises(UserError) as info:
        validate(raw)
    assert fragment in str(info.value)


def test_override_into_a_value_is_refused():
    raw = {"torch": {"epochs": 3}}
    with pytest.raises(UserError, match="torch.epochs is not a section"):
        apply_override(raw, "torch.epochs.x=1")


def test_experiment_rejects_assignment_of_wrong_type():
    exp = Experiment()
    with pytest.raises(Exception):
        exp.torch.epochs = "ten"


def test_batch_size_and_epochs_auto_follow_the_training_rows():
    from rayfit.config import TorchConfig, resolve_auto

    assert [auto_batch_size(rows) for rows in (100, 700, 5_000, 30_000, 2_000_000)] == [32, 32, 64, 256, 512]
    assert auto_epochs(700, 32) == 100 and auto_epochs(30_000, 256) == 34 and auto_epochs(2_000_000, 512) == 10
    settings = TorchConfig().for_rows(30_000)
    assert (settings.batch_size, settings.epochs) == (256, 34)
    assert TorchConfig(batch_size=16, epochs=7).for_rows(30_000).batch_size == 16  # a number stays
    exp = validate({"torch": {"batch_size": 64}, "keras": {"epochs": 12}})
    assert resolve_auto(exp, 30_000) == [("torch.epochs", auto_epochs(30_000, 64)), ("keras.batch_size", 256)]
