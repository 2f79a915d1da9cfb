"""Every example config is valid, and the quickstart file is exactly the built-in default."""
from pathlib import Path

import pytest

from rayfit.config import load_experiment

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_validates(path):
    load_experiment(str(path))


def test_quickstart_example_is_the_default():
    assert load_experiment(str(Path(__file__).parent.parent / "examples" / "quickstart.yaml")) == load_experiment()
