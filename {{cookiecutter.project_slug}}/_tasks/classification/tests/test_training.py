import json
import math

import pytest


def test_test_script_reports_accuracy_and_loss_as_json(tiny_run, test_script, capsys):
    checkpoint = tiny_run.run_dir / "checkpoints" / "best.pt"
    assert (
        test_script.main(["--checkpoint", str(checkpoint), "--num-workers", "0", "--device", "cpu"])
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["accuracy"] <= 1.0 and math.isfinite(result["loss"])
    assert result["accuracy"] == pytest.approx(tiny_run.best_metric)
    assert result["samples"] == 19  # the val split: a fifth of --synthetic-size 96
