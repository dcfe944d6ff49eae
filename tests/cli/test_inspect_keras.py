"""``keraffe inspect MODEL.keras``: per-layer sparsity of a Keras model, and the sizes of the file itself."""

from __future__ import annotations

import gzip
import json

import keras
import numpy as np
import pytest

from keraffe import pruning
from keraffe.cli.main import main


@pytest.fixture
def mid_pruning_file(tmp_path):
    """A model saved in the middle of pruning, compiled, so the file holds optimizer state too."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 4, size=32).astype("int32")
    inputs = keras.Input((8, 8, 2))
    hidden = keras.layers.Flatten(name="flatten")(keras.layers.Conv2D(8, 3, name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, name="dense")(hidden))
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=pruning.ConstantSparsity(0.75, 0))
    pruned.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "mid.keras"
    pruned.save(path)
    return path


def test_json_sizes_are_the_files_own(mid_pruning_file, capsys):
    assert main(["inspect", str(mid_pruning_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    data = mid_pruning_file.read_bytes()
    # The file as shipped (optimizer state included), not the model saved again.
    assert report["keras_bytes"] == len(data)
    assert report["gzip_bytes"] == len(gzip.compress(data, compresslevel=9, mtime=0))
    rows = {row["name"]: row for row in report["layers"]}
    assert set(rows) == {"conv", "dense"}
    for row in rows.values():
        assert row["prunable_sparsity"] == pytest.approx(0.75, abs=0.02)


def test_table_names_each_layer_and_its_pruning_state(mid_pruning_file, capsys):
    assert main(["inspect", str(mid_pruning_file)]) == 0
    out = capsys.readouterr().out
    assert "conv" in out and "dense" in out
    assert "pruning: unstructured" in out
